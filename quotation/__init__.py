"""The quotation process: trades, depth, K-line bars and tickers from the engine's market messages."""
