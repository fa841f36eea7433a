"""Hooks into other apps (filled in once policy bundles are published)."""
