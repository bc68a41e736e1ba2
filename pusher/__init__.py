"""The pusher process: WebSocket market data and private account updates."""
