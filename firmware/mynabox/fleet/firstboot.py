"""First boot: the provisioning bundle moves from the FAT partition into the state partition, then the FAT
copies are overwritten and deleted.

State layout: `<state>/identity` is a symlink to `<state>/identity-<bundle id>/` (config.toml, certificates,
credentials/*), owned by the service user, directories 0700, files 0400. The switch to a new identity is one
rename of a symlink, so a power cut leaves either the old identity or the new one, never a mix.

Every step is idempotent, and the order makes a cut anywhere safe to resume by running again:
1. no bundle directory on the FAT: nothing to do (a file in its place is wiped and refused, once);
2. bundle.json missing or invalid (provisioning cut short, or a wipe cut after zeroing it): wipe the rest;
3. the bundle is not yet the active identity: copy, check the hashes and the config, switch;
4. wipe the FAT copies, bundle.json last.
Step 4 runs whatever steps 2 and 3 met (any exception: the bundle is hostile input), and wipes the directory
by its clusters, not by the names in it (`FatImage.wipe_tree`): no key stays on the FAT partition.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from mynabox.adapters.files import fsync_dir, write_new
from mynabox.fleet.bundle import CONFIG, CREDENTIALS, MANIFEST, BundleError, check_tree, parse_manifest
from mynabox.fleet.fatimage import FatError, FatImage
from mynabox.record import record

log = logging.getLogger(__name__)

BUNDLE_DIR = PurePosixPath("/mynabox")
IDENTITY = "identity"
NOT_A_DIRECTORY = (
    f"{BUNDLE_DIR} on the FAT partition is a file, not a provisioning bundle: overwritten and deleted "
    "(provision the card again)"
)


@record
class Owner:
    uid: int
    gid: int


@record
class FirstbootResult:
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
) -> FirstbootResult:
    """`checkpoint(name)` is called after each step that a power cut could follow (tests stop there)."""
    kind = fat.kind(BUNDLE_DIR)
    if kind is None:
        return FirstbootResult(None, 0)
    if kind == "file":
        fat.wipe(BUNDLE_DIR)  # it could be a bundle packed the wrong way, keys and all
        return FirstbootResult(None, 1, NOT_A_DIRECTORY)
    installed, problem = None, None
    try:
        installed, problem = _take_in(fat, state, owner, checkpoint)
    except Exception as err:  # hostile input: whatever it raises, the wipe below runs
        # The type, and for the OS's errors what and where (no text of the bundle: it holds keys).
        where = f": {err.strerror}: {err.filename}" if isinstance(err, OSError) and err.strerror else ""
        log.warning("provisioning bundle refused: %s%s", type(err).__name__, where)
        problem = f"provisioning bundle refused ({type(err).__name__}{where})"
    checkpoint("before-wipe")
    wiped = fat.wipe_tree(BUNDLE_DIR, last=MANIFEST, step=checkpoint)
    return FirstbootResult(installed, wiped, problem)


def _take_in(
    fat: FatImage, state: Path, owner: Owner, checkpoint: Callable[[str], None]
) -> tuple[str | None, str | None]:
    """(the bundle id installed, or None; the problem, or None)."""
    for stale in state.glob(".identity-*.tmp"):
        shutil.rmtree(stale)  # a copy cut short (its bundle may be gone from the FAT since)
    manifest = BUNDLE_DIR / MANIFEST
    try:
        data = fat.read(manifest) if fat.exists(manifest) else None
        if data is not None and not data.strip(b"\0"):
            return None, None  # zeroed by a wipe that a cut stopped before the delete
        bundle_id, digests = parse_manifest(data) if data is not None else _incomplete()
    except (BundleError, FatError) as err:
        return None, f"incomplete provisioning bundle removed ({err})"
    if active_id(state) == bundle_id:
        return None, None
    try:
        _install(fat, state, owner, bundle_id, digests, checkpoint)
    except (BundleError, FatError) as err:
        return None, f"provisioning bundle refused ({err})"
    return bundle_id, None


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
        try:
            _copy(fat, staging, owner, digests, checkpoint)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        os.rename(staging, final)
        fsync_dir(state)
        checkpoint("renamed")
    _switch(state, final, owner, checkpoint)


def _copy(
    fat: FatImage, staging: Path, owner: Owner, digests: dict[str, str], checkpoint: Callable[[str], None]
) -> None:
    """The bundle into `staging`, checked, then handed to the service user (the caller cleans up)."""
    _mkdir(staging)
    _mkdir(staging / CREDENTIALS)
    for name, digest in sorted(digests.items()):  # the manifest's names are the fixed expected ones
        data = fat.read(BUNDLE_DIR / name)
        if hashlib.sha256(data).hexdigest() != digest:
            raise BundleError([f"{name}: does not match {MANIFEST} (damaged card?)"])
        write_new(staging / name, data, mode=0o400)
        checkpoint(f"copied:{name}")
    # Checked while still ours: the loader's permission check accepts files owned by root or by the
    # user running it, and this runs as root for the service user (who then reads its own files).
    problems = check_tree(staging)
    if problems:
        raise BundleError(problems)
    for name in digests:
        os.chown(staging / name, owner.uid, owner.gid)
    os.chown(staging / CREDENTIALS, owner.uid, owner.gid)
    os.chown(staging, owner.uid, owner.gid)
    fsync_dir(staging / CREDENTIALS)
    fsync_dir(staging)


def _switch(state: Path, final: Path, owner: Owner, checkpoint: Callable[[str], None]) -> None:
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


def _mkdir(path: Path) -> None:
    path.mkdir(mode=0o700)
    path.chmod(0o700)


__all__ = ["BUNDLE_DIR", "CONFIG", "FirstbootResult", "Owner", "active_id", "run_firstboot"]
