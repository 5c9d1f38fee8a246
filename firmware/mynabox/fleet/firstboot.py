"""First boot: the provisioning bundle moves from the FAT partition into the state partition, then the FAT
copies are overwritten and deleted.

State layout: `<state>/identity` is a symlink to `<state>/identity-<bundle id>/` (config.toml, certificates,
credentials/*), owned by the service user, directories 0700, files 0400. The switch to a new identity is one
rename of a symlink, so a power cut leaves either the old identity or the new one, never a mix.

Every step is idempotent, and the order makes a cut anywhere safe to resume by running again:
1. no bundle directory on the FAT: nothing to do;
2. bundle.json missing or invalid (provisioning cut short, or a wipe cut after zeroing it): wipe the rest;
3. the bundle is not yet the active identity: copy, check the hashes and the config, switch;
4. wipe the FAT copies, bundle.json last.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from mynabox.adapters.files import fsync_dir, write_new
from mynabox.fleet.bundle import CONFIG, CREDENTIALS, MANIFEST, BundleError, check_tree, parse_manifest
from mynabox.fleet.fatimage import FatError, FatImage

log = logging.getLogger(__name__)

BUNDLE_DIR = PurePosixPath("/mynabox")
IDENTITY = "identity"
# Test hook: the checkpoint names a test may stop the process at (it sends itself SIGKILL there).
CRASH_ENV = "MYNABOX_FIRSTBOOT_CRASH_AT"


@dataclass(frozen=True)
class Owner:
    uid: int
    gid: int


@dataclass(frozen=True)
class Outcome:
    installed: str | None  # the bundle id made active in this run
    wiped: int  # FAT files overwritten and deleted
    problem: str | None = None


def active_id(state: Path) -> str | None:
    link = state / IDENTITY
    try:
        target = os.readlink(link)
    except OSError:
        return None
    name = Path(target).name
    return name.removeprefix("identity-") if name.startswith("identity-") else None


def run_firstboot(
    fat: FatImage, state: Path, owner: Owner, checkpoint: Callable[[str], None] = lambda _: None
) -> Outcome:
    files = fat.list_files(BUNDLE_DIR)
    if not files:
        fat.remove_tree(BUNDLE_DIR)  # an empty directory left by a cut after the last delete
        return Outcome(None, 0)
    manifest = BUNDLE_DIR / MANIFEST
    installed = None
    problem = None
    try:
        bundle_id, digests = parse_manifest(fat.read(manifest)) if manifest in files else _incomplete()
    except (BundleError, FatError) as err:
        problem = f"incomplete provisioning bundle removed ({err})"
    else:
        if active_id(state) != bundle_id:
            try:
                _install(fat, state, owner, bundle_id, digests, checkpoint)
                installed = bundle_id
            except (BundleError, FatError) as err:
                problem = f"provisioning bundle refused ({err})"
    checkpoint("before-wipe")
    # Secrets first, bundle.json last: while it is intact the bundle is still recognised as installed.
    order = sorted((f for f in files if f != manifest), key=lambda p: (CREDENTIALS not in p.parts, str(p)))
    for path in [*order, *([manifest] if manifest in files else [])]:
        fat.wipe(path)
        checkpoint(f"wiped:{path.relative_to(BUNDLE_DIR)}")
    fat.remove_tree(BUNDLE_DIR)
    return Outcome(installed, len(files), problem)


def _incomplete() -> tuple[str, dict[str, str]]:
    raise BundleError([f"no {MANIFEST}"])


def _install(  # noqa: PLR0917
    fat: FatImage,
    state: Path,
    owner: Owner,
    bundle_id: str,
    digests: dict[str, str],
    checkpoint: Callable[[str], None],
) -> None:
    final = state / f"identity-{bundle_id}"
    staging = state / f".identity-{bundle_id}.tmp"
    if not final.is_dir():
        shutil.rmtree(staging, ignore_errors=True)
        _mkdir(staging)
        _mkdir(staging / CREDENTIALS)
        for name, digest in sorted(digests.items()):
            data = fat.read(BUNDLE_DIR / name)
            if hashlib.sha256(data).hexdigest() != digest:
                shutil.rmtree(staging)
                raise BundleError([f"{name}: does not match {MANIFEST} (damaged card?)"])
            write_new(staging / name, data, mode=0o400)
            checkpoint(f"copied:{name}")
        # Checked while still ours: the loader's permission check accepts files owned by root or by the
        # user running it, and this runs as root for the service user (who then reads its own files).
        problems = check_tree(staging)
        if problems:
            shutil.rmtree(staging)
            raise BundleError(problems)
        for name in digests:
            os.chown(staging / name, owner.uid, owner.gid)
        os.chown(staging / CREDENTIALS, owner.uid, owner.gid)
        os.chown(staging, owner.uid, owner.gid)
        fsync_dir(staging / CREDENTIALS)
        fsync_dir(staging)
        os.rename(staging, final)
        fsync_dir(state)
        checkpoint("renamed")
    link_tmp = state / f".{IDENTITY}.tmp"
    with contextlib.suppress(FileNotFoundError):
        link_tmp.unlink()
    os.symlink(final.name, link_tmp)
    os.lchown(link_tmp, owner.uid, owner.gid)
    os.rename(link_tmp, state / IDENTITY)
    fsync_dir(state)
    checkpoint("switched")
    for old in state.glob("identity-*"):
        if old != final:
            shutil.rmtree(old)
    for old in state.glob(".identity-*.tmp"):
        shutil.rmtree(old)


def _mkdir(path: Path) -> None:
    path.mkdir(mode=0o700)
    path.chmod(0o700)


__all__ = ["BUNDLE_DIR", "CONFIG", "CRASH_ENV", "Outcome", "Owner", "active_id", "run_firstboot"]
