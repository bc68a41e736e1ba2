"""API keys and account numbers: an LMDB store shared by every gateway process and the bootstrap tool.

The store lives in ``config.paths.credentials_dir`` (directory mode 0700, files 0600). It holds:

- ``keys``: key id -> ``{account, secret, role}``. The key id is 16 random hex characters; the secret is
  32 random bytes (``secrets.token_bytes``), kept as 64 hex characters. A Logon's signature is keyed by
  the secret's bytes (``bytes.fromhex(secret)``). ``role`` is ``"trader"`` (trades its own account) or
  ``"admin"`` (creates accounts, deposits, withdraws; it has no trading account: ``account == -1``).
- ``meta``: the next account number to allocate. Account ids start at 1 (the fee account, 0 by default,
  is never handed out) and are allocated in one write transaction, so two processes never get the same.
- ``admin_requests``: an admin request id -> the account and key it created, so that a repeated
  ``create_account`` request (same AdminReqID) gets the same account and key, never a second one.

No secret has a default value: every secret comes from ``secrets.token_bytes`` when its key is created.
LMDB serialises write transactions across processes, which makes allocation atomic.
"""

from __future__ import annotations

import os
import secrets
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import lmdb
import msgpack

if TYPE_CHECKING:  # pragma: no cover
    from common.config import ExchangeConfig

TRADER = "trader"
ADMIN = "admin"
ROLES = (TRADER, ADMIN)
NO_ACCOUNT = -1  # the account of an admin key: admins do not trade
FIRST_ACCOUNT = 1

SECRET_BYTES = 32
KEY_ID_BYTES = 8  # 16 hex characters
MAP_SIZE = 64 << 20  # a key is ~100 bytes: room for hundreds of thousands of keys
DIR_MODE = 0o700
FILE_MODE = 0o600

_NEXT_ACCOUNT = b"next_account"
_ACCOUNT = struct.Struct(">q")


class CredentialsError(RuntimeError):
    """The store cannot do what was asked (no account left, unknown role, ...)."""


@dataclass(frozen=True, slots=True)
class Credential:
    key_id: str
    account: int
    secret: str  # 64 hex characters
    role: str

    @property
    def secret_bytes(self) -> bytes:
        """The HMAC key of this credential's Logon signatures."""
        return bytes.fromhex(self.secret)

    @property
    def is_admin(self) -> bool:
        return self.role == ADMIN


@dataclass(frozen=True, slots=True)
class CreatedAccount:
    account: int
    key_id: str
    secret: str
    created: bool  # False when an earlier request with the same id had already created it


class CredentialStore:
    """One process's handle on the store. Open it once per process (LMDB forbids two handles on one
    environment inside a process); every method is a transaction of its own."""

    def __init__(self, path: str | os.PathLike[str], *, max_accounts: int | None = None,
                 reserved_accounts: tuple[int, ...] = (0,)):
        self.path = Path(path)
        self.max_accounts = max_accounts
        self.reserved_accounts = frozenset(reserved_accounts)
        self.path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        os.chmod(self.path, DIR_MODE)
        self.env = lmdb.open(str(self.path), map_size=MAP_SIZE, max_dbs=4, mode=FILE_MODE, subdir=True)
        for name in ("data.mdb", "lock.mdb"):
            file = self.path / name
            if file.exists():
                os.chmod(file, FILE_MODE)
        self._keys = self.env.open_db(b"keys")
        self._meta = self.env.open_db(b"meta")
        self._admin_requests = self.env.open_db(b"admin_requests")

    @classmethod
    def open(cls, config: "ExchangeConfig") -> "CredentialStore":
        """The store of a configuration: its directory, its account range and its fee account."""
        return cls(config.paths.credentials_dir, max_accounts=config.capacity.max_accounts,
                   reserved_accounts=(config.fees.fee_account,))

    def close(self) -> None:
        self.env.close()

    def __enter__(self) -> "CredentialStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- accounts ---------------------------------------------------------------------------------

    def allocate_account(self) -> int:
        """The next unused account id (1, 2, ...; never a reserved one), atomically."""
        with self.env.begin(write=True) as txn:
            return self._allocate(txn)

    def _allocate(self, txn: lmdb.Transaction) -> int:
        raw = txn.get(_NEXT_ACCOUNT, db=self._meta)
        account = FIRST_ACCOUNT if raw is None else _ACCOUNT.unpack(raw)[0]
        while account in self.reserved_accounts:
            account += 1
        if self.max_accounts is not None and account >= self.max_accounts:
            raise CredentialsError(f"no account left: capacity.max_accounts is {self.max_accounts}")
        txn.put(_NEXT_ACCOUNT, _ACCOUNT.pack(account + 1), db=self._meta)
        return account

    # --- keys -------------------------------------------------------------------------------------

    def create_key(self, account: int, role: str = TRADER) -> tuple[str, str]:
        """A new key for ``account``: (key id, secret as hex). The secret is fresh random bytes."""
        with self.env.begin(write=True) as txn:
            return self._create_key(txn, account, role)

    def _create_key(self, txn: lmdb.Transaction, account: int, role: str) -> tuple[str, str]:
        if role not in ROLES:
            raise CredentialsError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
        if role == ADMIN and account != NO_ACCOUNT:
            raise CredentialsError("an admin key has no trading account")
        if role == TRADER and account < 0:
            raise CredentialsError("a trader key needs an account")
        secret = secrets.token_bytes(SECRET_BYTES).hex()
        while True:
            key_id = secrets.token_hex(KEY_ID_BYTES)
            record = msgpack.packb({"account": account, "secret": secret, "role": role})
            if txn.put(key_id.encode(), record, db=self._keys, overwrite=False):
                return key_id, secret

    def create_admin_key(self) -> tuple[str, str]:
        """A new admin key: (key id, secret as hex)."""
        return self.create_key(NO_ACCOUNT, ADMIN)

    def lookup(self, key_id: str) -> Credential | None:
        if not isinstance(key_id, str) or not key_id or len(key_id) > 64:
            return None
        with self.env.begin() as txn:
            raw = txn.get(key_id.encode(), db=self._keys)
        if raw is None:
            return None
        fields = msgpack.unpackb(raw)
        return Credential(key_id=key_id, account=int(fields["account"]), secret=fields["secret"],
                          role=fields["role"])

    def revoke(self, key_id: str) -> bool:
        """Remove a key; sessions already logged on with it stay until they end."""
        with self.env.begin(write=True) as txn:
            return txn.delete(key_id.encode(), db=self._keys)

    def credentials(self) -> Iterator[Credential]:
        """Every key, by key id."""
        with self.env.begin() as txn:
            items = list(txn.cursor(db=self._keys))
        for key, raw in items:
            fields = msgpack.unpackb(raw)
            yield Credential(key.decode(), int(fields["account"]), fields["secret"], fields["role"])

    def admin_keys(self) -> list[Credential]:
        return [c for c in self.credentials() if c.role == ADMIN]

    def keys_of(self, account: int) -> list[Credential]:
        return [c for c in self.credentials() if c.account == account and c.role == TRADER]

    # --- account creation (admin requests) --------------------------------------------------------

    def create_account(self, request_id: str | None = None) -> CreatedAccount:
        """Allocate an account and a trader key for it in one transaction. With a ``request_id``, a
        second call with the same id returns what the first created (``created=False``)."""
        with self.env.begin(write=True) as txn:
            if request_id is not None:
                raw = txn.get(request_id.encode(), db=self._admin_requests)
                if raw is not None:
                    done = msgpack.unpackb(raw)
                    stored = txn.get(done["key_id"].encode(), db=self._keys)
                    secret = msgpack.unpackb(stored)["secret"] if stored is not None else ""
                    return CreatedAccount(done["account"], done["key_id"], secret, created=False)
            account = self._allocate(txn)
            key_id, secret = self._create_key(txn, account, TRADER)
            if request_id is not None:
                txn.put(request_id.encode(), msgpack.packb({"account": account, "key_id": key_id}),
                        db=self._admin_requests)
            return CreatedAccount(account, key_id, secret, created=True)

    def admin_request(self, request_id: str) -> CreatedAccount | None:
        """What an earlier ``create_account(request_id)`` created, or None."""
        with self.env.begin() as txn:
            raw = txn.get(request_id.encode(), db=self._admin_requests)
            if raw is None:
                return None
            done = msgpack.unpackb(raw)
            stored = txn.get(done["key_id"].encode(), db=self._keys)
        secret = msgpack.unpackb(stored)["secret"] if stored is not None else ""
        return CreatedAccount(done["account"], done["key_id"], secret, created=False)
