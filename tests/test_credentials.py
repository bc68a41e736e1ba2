"""The credential store: keys, secrets, account allocation, file modes, sharing between processes."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from common.credentials import (
    ADMIN,
    NO_ACCOUNT,
    TRADER,
    CredentialsError,
    CredentialStore,
)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def store(tmp_path):
    with CredentialStore(tmp_path / "credentials") as opened:
        yield opened


def test_accounts_are_allocated_from_one_and_never_twice(store):
    assert [store.allocate_account() for _ in range(5)] == [1, 2, 3, 4, 5]


def test_the_fee_account_is_never_allocated(tmp_path):
    with CredentialStore(tmp_path / "c", reserved_accounts=(0, 3)) as store:
        assert [store.allocate_account() for _ in range(4)] == [1, 2, 4, 5]


def test_allocation_stops_at_the_account_capacity(tmp_path):
    with CredentialStore(tmp_path / "c", max_accounts=3) as store:
        assert [store.allocate_account(), store.allocate_account()] == [1, 2]
        with pytest.raises(CredentialsError, match="no account left"):
            store.allocate_account()


def test_allocation_survives_reopening_the_store(tmp_path):
    with CredentialStore(tmp_path / "c") as store:
        store.allocate_account()
    with CredentialStore(tmp_path / "c") as store:
        assert store.allocate_account() == 2


def test_two_processes_allocating_at_once_never_get_the_same_account(tmp_path):
    path = tmp_path / "shared"
    CredentialStore(path).close()
    script = textwrap.dedent(f"""
        import json, sys
        from common.credentials import CredentialStore
        with CredentialStore({str(path)!r}) as store:
            print(json.dumps([store.allocate_account() for _ in range(200)]))
    """)
    workers = [subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True)
               for _ in range(2)]
    results = []
    try:
        for worker in workers:
            out, _ = worker.communicate(timeout=60)
            assert worker.returncode == 0
            results.append(json.loads(out))
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    allocated = results[0] + results[1]
    assert sorted(allocated) == list(range(1, 401))
    assert all(a < b for a, b in zip(results[0], results[0][1:]))  # each process sees them in order


def test_a_created_key_is_found_with_its_account_secret_and_role(store):
    key_id, secret = store.create_key(7)
    credential = store.lookup(key_id)
    assert credential.account == 7 and credential.role == TRADER and credential.secret == secret
    assert len(key_id) == 16 and int(key_id, 16) >= 0
    assert len(secret) == 64 and len(credential.secret_bytes) == 32
    assert not credential.is_admin


def test_every_key_has_its_own_random_id_and_secret(store):
    keys = [store.create_key(1) for _ in range(50)]
    assert len({k for k, _ in keys}) == 50
    assert len({s for _, s in keys}) == 50


def test_an_unknown_or_malformed_key_id_is_not_found(store):
    assert store.lookup("0000000000000000") is None
    assert store.lookup("") is None
    assert store.lookup("x" * 500) is None


def test_an_admin_key_has_no_trading_account(store):
    key_id, _ = store.create_admin_key()
    credential = store.lookup(key_id)
    assert credential.is_admin and credential.role == ADMIN and credential.account == NO_ACCOUNT
    assert [c.key_id for c in store.admin_keys()] == [key_id]


def test_roles_and_accounts_must_agree(store):
    with pytest.raises(CredentialsError):
        store.create_key(5, "superuser")
    with pytest.raises(CredentialsError):
        store.create_key(5, ADMIN)
    with pytest.raises(CredentialsError):
        store.create_key(-1, TRADER)


def test_a_revoked_key_is_gone(store):
    key_id, _ = store.create_key(1)
    assert store.revoke(key_id)
    assert store.lookup(key_id) is None


def test_create_account_allocates_an_account_and_a_trader_key_together(store):
    created = store.create_account("req-1")
    assert created.created and created.account == 1
    credential = store.lookup(created.key_id)
    assert credential.account == 1 and credential.secret == created.secret
    assert [c.key_id for c in store.keys_of(1)] == [created.key_id]


def test_create_account_with_the_same_request_id_returns_the_same_account_and_key(store):
    first = store.create_account("req-1")
    again = store.create_account("req-1")
    assert not again.created
    assert (again.account, again.key_id, again.secret) == (first.account, first.key_id, first.secret)
    assert store.admin_request("req-1") == again
    assert store.admin_request("other") is None
    assert store.create_account("req-2").account == 2


def test_the_store_directory_is_private_and_its_files_are_0600(tmp_path):
    path = tmp_path / "private"
    with CredentialStore(path) as store:
        store.create_key(1)
    assert stat.S_IMODE(path.stat().st_mode) == 0o700
    files = list(path.iterdir())
    assert files
    for file in files:
        assert stat.S_IMODE(file.stat().st_mode) == 0o600, file.name


def test_opening_from_the_configuration_uses_its_directory_and_limits(tmp_path):
    from common.config import default_document, parse_config

    document = default_document()
    document["paths"]["data_dir"] = str(tmp_path)
    document["capacity"]["max_accounts"] = 3
    config = parse_config(document)
    with CredentialStore.open(config) as store:
        assert store.path == tmp_path / "credentials"
        assert [store.allocate_account(), store.allocate_account()] == [1, 2]
        with pytest.raises(CredentialsError):
            store.allocate_account()
