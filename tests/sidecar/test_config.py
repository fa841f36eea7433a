"""sidecar.yaml defaults that keep sidecars sharing a machine apart."""

from cordum.sidecar.config import load_config

from .conftest import write_config


def test_sidecars_with_their_own_spools_in_one_folder_keep_their_own_bundles(tmp_path):
    first = load_config(write_config(tmp_path / "a.yaml", spool=str(tmp_path / "claude.db")))
    second = load_config(write_config(tmp_path / "b.yaml", spool=str(tmp_path / "cursor.db")))
    assert first.bundle_store_path == tmp_path / "claude.bundle.json"
    assert second.bundle_store_path == tmp_path / "cursor.bundle.json"
    explicit = load_config(write_config(tmp_path / "c.yaml", spool=str(tmp_path / "x.db"),
                                        bundle_store=str(tmp_path / "store.json")))
    assert explicit.bundle_store_path == tmp_path / "store.json"
