"""--save-profile and the safe writer of a user's file: locked, atomic, through links, mode/owner/CRLF kept."""

from __future__ import annotations

import errno
import json
import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import ROOT, clean_environ
from errorparts import parts

from _devswitch import files, profiles
from _devswitch.cli import main
from _devswitch.errors import UsageError

PROFILE = {"device": "cpu", "precision": "half"}


def snapshot(folder: Path) -> dict:
    """Every path under ``folder`` with its bytes (links as their target), to show nothing changed."""
    return {p: (os.readlink(p) if p.is_symlink() else p.read_bytes() if p.is_file() else "dir")
            for p in sorted(folder.rglob("*"))}


# --- the writer ---------------------------------------------------------------------------------------------

def test_twenty_concurrent_writers_keep_every_profile(tmp_path):
    """Twenty threads add a profile each to one file at the same moment: all twenty are there, and no
    temporary or lock file is left (flock locks conflict between separate opens, threads included)."""
    rc = tmp_path / ".devswitchrc"
    rc.write_text("# mine\ndevice: cpu\n")
    start, errors = threading.Barrier(20), []

    def writer(i):
        start.wait()
        try:
            profiles.add(rc, f"p{i}", {"device": "cpu", "precision": "fp32"}, f"writer {i}")
        except Exception as error:  # noqa: BLE001 - collected and asserted below
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    from _devswitch.rcfile import read_file

    assert set(read_file(rc, "project file").profiles) == {f"p{i}" for i in range(20)}
    assert rc.read_text().startswith("# mine\ndevice: cpu\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".devswitchrc"]


def test_a_symbolic_link_stays_a_link_and_its_target_gets_the_profile(tmp_path):
    dotfiles, project = tmp_path / "dotfiles", tmp_path / "project"
    dotfiles.mkdir()
    project.mkdir()
    (dotfiles / "devswitchrc").write_text("precision: fp32\n")
    link = project / ".devswitchrc"
    link.symlink_to(Path("..") / "dotfiles" / "devswitchrc")  # relative, as a dotfiles manager makes them
    written = profiles.add(link, "fast", PROFILE, "x")
    assert link.is_symlink() and os.readlink(link) == os.path.join("..", "dotfiles", "devswitchrc")
    assert written == dotfiles / "devswitchrc"
    assert "  fast:\n" in (dotfiles / "devswitchrc").read_text()
    assert sorted(p.name for p in project.iterdir()) == [".devswitchrc"]
    assert sorted(p.name for p in dotfiles.iterdir()) == ["devswitchrc"]  # lock and temporary gone


def test_a_dangling_link_is_refused_and_its_target_never_created(tmp_path):
    """A link whose target does not exist could point at any file (a shell's start-up file): refused, before
    anything runs and again when saving, whether or not the target's folder exists."""
    (tmp_path / "dotfiles").mkdir()
    link = tmp_path / ".devswitchrc"
    link.symlink_to(tmp_path / "dotfiles" / "rc")
    target = str(tmp_path / "dotfiles" / "rc")
    with pytest.raises(UsageError) as info:
        profiles.check(link, "fast")
    parts(info, UsageError, where=str(link), named=["symbolic link", target], fix="remove the link")
    with pytest.raises(UsageError) as info:
        profiles.add(link, "fast", PROFILE, "x")
    parts(info, UsageError, where=str(link), named=["symbolic link", target], fix="remove the link")
    assert link.is_symlink() and not (tmp_path / "dotfiles" / "rc").exists()
    broken = tmp_path / "b" / ".devswitchrc"
    broken.parent.mkdir()
    broken.symlink_to(tmp_path / "nowhere" / "rc")
    with pytest.raises(UsageError) as info:
        profiles.add(broken, "fast", PROFILE, "x")
    parts(info, UsageError, where=str(broken), named=[str(tmp_path / "nowhere" / "rc")], fix="remove the link")
    assert broken.is_symlink() and not (tmp_path / "nowhere").exists()
    loop = tmp_path / "loop" / ".devswitchrc"
    loop.parent.mkdir()
    loop.symlink_to(loop)
    with pytest.raises(UsageError) as info:
        profiles.add(loop, "fast", PROFILE, "x")
    parts(info, UsageError, where=str(loop), named=["symbolic link", "loop"], fix="remove the link")


def test_line_ends_bom_comments_mode_owner_and_group_are_kept(tmp_path):
    rc = tmp_path / ".devswitchrc"
    rc.write_bytes(b"\xef\xbb\xbf# team settings\r\ndevice: cpu   # keep me\r\nprofiles:\r\n    old:\r\n"
                   b"        precision: fp16\r\n")
    os.chmod(rc, 0o640)
    if os.geteuid() == 0:  # root can give the file to someone else: the rewrite must keep them
        os.chown(rc, 1234, 5678)
    before = rc.stat()
    profiles.add(rc, "fast", PROFILE, "from compare")
    data = rc.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf# team settings\r\ndevice: cpu   # keep me\r\nprofiles:\r\n")
    assert data.count(b"\n") == data.count(b"\r\n") == 9  # every line CRLF, the new ones too
    assert b"    fast:\r\n      device: cpu\r\n" in data and b"    old:\r\n        precision: fp16\r\n" in data
    after = rc.stat()
    assert (stat.S_IMODE(after.st_mode), after.st_uid, after.st_gid) == (0o640, before.st_uid, before.st_gid)
    assert after.st_ino != before.st_ino  # replaced atomically, not rewritten in place


def test_a_new_file_follows_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        profiles.add(tmp_path / ".devswitchrc", "fast", PROFILE, "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / ".devswitchrc").stat().st_mode) == 0o640


def test_a_read_only_file_or_folder_is_refused_and_left_untouched_even_as_root(tmp_path):
    """Mode 0444 (0555 for a folder) is the user's "hands off": refused before any write, for every user."""
    rc = tmp_path / "a" / ".devswitchrc"
    rc.parent.mkdir()
    rc.write_text("device: cpu\n")
    rc.chmod(0o444)
    with pytest.raises(UsageError) as info:
        profiles.add(rc, "fast", PROFILE, "x")
    parts(info, UsageError, where=str(rc), named=["read-only", "0444"], fix="chmod u+w")
    assert rc.read_text() == "device: cpu\n" and stat.S_IMODE(rc.stat().st_mode) == 0o444
    folder = tmp_path / "ro"
    folder.mkdir(mode=0o555)
    try:
        with pytest.raises(UsageError) as info:
            profiles.check(folder / ".devswitchrc", "fast")
        parts(info, UsageError, where=str(folder / ".devswitchrc"), named=[str(folder), "0555"], fix="chmod u+w")
        assert list(folder.iterdir()) == []
    finally:
        folder.chmod(0o755)


_AS_NOBODY = r"""
import os, sys
from pathlib import Path
from _devswitch import profiles
from _devswitch.errors import UsageError
if os.geteuid() == 0:
    os.setegid(65534); os.seteuid(65534)   # the effective user: what the kernel checks a write against
folder = Path(sys.argv[1])
for path in (folder / "mine" / ".devswitchrc", folder / "theirs" / ".devswitchrc"):
    try:
        profiles.add(path, "fast", {"device": "cpu"}, "x")
        print("WROTE", path)
    except UsageError as error:
        print("REFUSED", error.message)
"""


@pytest.mark.subprocess
def test_a_file_or_folder_the_user_cannot_write_is_refused(tmp_path):
    """As a user other than the owner (root drops to 'nobody' in a child process; anyone else is not the
    owner already): a 0644 file of root's and a 0755 folder of root's are refused, untouched."""
    import tempfile

    if os.geteuid() != 0 and os.access("/", os.W_OK):
        pytest.skip("this user may write anywhere")
    shared = Path(tempfile.mkdtemp(prefix="devswitch-perm-"))  # tmp_path's parents are 0700: nobody can't enter
    try:
        shared.chmod(0o755)
        (shared / "mine").mkdir(mode=0o755)
        (shared / "mine" / ".devswitchrc").write_text("device: cpu\n")
        (shared / "mine" / ".devswitchrc").chmod(0o644)
        (shared / "theirs").mkdir(mode=0o755)
        if os.geteuid() != 0:
            pytest.skip("needs a file owned by another user: run as root to drop to 'nobody'")
        before = snapshot(shared)
        proc = subprocess.run([sys.executable, "-c", _AS_NOBODY, str(shared)], capture_output=True, text=True,
                              env=clean_environ(PYTHONPATH=str(ROOT), DEVSWITCH_DISABLE="1"), timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.splitlines() == [
            "REFUSED the file is not writable by you (mode 0644, owner id 0): devswitch leaves it untouched",
            f"REFUSED cannot write in its folder {shared / 'theirs'} (read-only, mode 0755)"], proc.stdout
        assert snapshot(shared) == before
    finally:
        import shutil

        shutil.rmtree(shared)


@pytest.mark.parametrize("fail, where, message", [
    pytest.param(errno.EROFS, "replace", "the file system is read-only; it is unchanged", id="EROFS at the rename"),
    pytest.param(errno.EACCES, "open", "permission denied", id="EACCES creating the temporary file"),
    pytest.param(errno.ENOSPC, "write", "No space left on device", id="ENOSPC writing"),
])
def test_a_write_that_fails_leaves_the_file_as_it_was_and_names_no_temporary_file(tmp_path, monkeypatch, fail,
                                                                                  where, message):
    """The paths that do not depend on who runs the tests: the OS refuses (read-only mount, permission,
    full disk) part-way through; the file is unchanged, nothing is left beside it."""
    rc = tmp_path / ".devswitchrc"
    rc.write_text("device: cpu\n")
    real = {"replace": os.replace, "open": os.open, "write": os.write}[where]

    def failing(*args, **kwargs):
        if where != "open" or str(args[0]).endswith(".tmp"):
            raise OSError(fail, os.strerror(fail))
        return real(*args, **kwargs)

    monkeypatch.setattr(files.os, where, failing)
    with pytest.raises(UsageError) as caught:
        profiles.add(rc, "fast", PROFILE, "x")
    monkeypatch.undo()
    assert message in str(caught.value) and ".tmp" not in str(caught.value)
    assert caught.value.where == str(rc)
    assert rc.read_text() == "device: cpu\n" and [p.name for p in tmp_path.iterdir()] == [".devswitchrc"]


@pytest.mark.parametrize("broken, message", [
    pytest.param(lambda text, *a: text + "devcie: gpu\n", r"would make the file unreadable \(.*\.devswitchrc:2:1: "
                 r"unknown key 'devcie'\)", id="unreadable"),
    pytest.param(lambda text, *a: "profiles:\n  fast: {device: cpu}\n", "would change how devswitch reads the rest",
                 id="the rest changed"),
])
def test_a_result_that_would_not_read_back_is_not_written_and_names_the_users_file(tmp_path, monkeypatch, broken,
                                                                                    message):
    """The new text is read back by devswitch's own reader before it replaces the file; a failure names the
    user's file, never the temporary one (gone by then)."""
    rc = tmp_path / ".devswitchrc"
    rc.write_text("device: cpu\n")
    monkeypatch.setattr(profiles, "_insert", broken)
    with pytest.raises(UsageError, match=message) as caught:
        profiles.add(rc, "fast", PROFILE, "x")
    assert ".tmp" not in str(caught.value) and str(rc) in str(caught.value)
    assert rc.read_text() == "device: cpu\n" and [p.name for p in tmp_path.iterdir()] == [".devswitchrc"]


@pytest.mark.parametrize("text, expected", [
    pytest.param("profiles: {}\n", "profiles:\n  # x\n  fast:\n", id="profiles: {} becomes a block"),
    pytest.param("device: cpu\n...\n# after the end\n", "device: cpu\n\nprofiles:\n  # x\n  fast:\n    device: cpu\n"
                 "    precision: half\n...\n# after the end\n", id="before a '...' document end"),
    pytest.param("# only comments\n", "# only comments\n\nprofiles:\n", id="comments only"),
    pytest.param("  device: cpu\n", "  device: cpu\n\n  profiles:\n    # x\n    fast:\n", id="indented settings"),
])
def test_layouts_devswitch_can_add_to(tmp_path, text, expected):
    from _devswitch.config import resolve

    rc = tmp_path / ".devswitchrc"
    rc.write_text(text)
    profiles.check(rc, "fast")
    profiles.add(rc, "fast", PROFILE, "x")
    assert rc.read_text().startswith(expected)
    cfg = resolve({"DEVSWITCH_PROFILE": "fast"}, tmp_path / "home", tmp_path)
    assert (cfg.device, cfg.precision) == ("cpu", "half")


@pytest.mark.parametrize("text, message", [
    pytest.param("profiles: {a: {device: cpu}}\n", r"written in flow style", id="flow style"),
    pytest.param("device: cpu\n---\nprecision: fp16\n", r"malformed YAML: but found another document",
                 id="several documents"),
    pytest.param("{device: cpu}\n", r"not a block of 'key: value' lines", id="top level in flow style"),
    pytest.param("profiles:\n  fast: {device: gpu}\n", r"profile 'fast' is already defined in .*:2:3",
                 id="name taken"),
    pytest.param("devcie: gpu\n", r"unknown key 'devcie'", id="a file devswitch refuses"),
    pytest.param("device: cpu\u2028precision: fp16\n", r"U\+2028|line breaks other than LF and CRLF", id="U+2028"),
])
def test_files_devswitch_cannot_add_to_are_refused_up_front_and_untouched(tmp_path, text, message):
    rc = tmp_path / ".devswitchrc"
    rc.write_text(text, encoding="utf-8")
    for attempt in (lambda: profiles.check(rc, "fast"), lambda: profiles.add(rc, "fast", PROFILE, "x")):
        with pytest.raises(UsageError, match=message):
            attempt()
        assert rc.read_text(encoding="utf-8") == text


def test_a_name_another_file_read_defines_is_refused(tmp_path):
    """The same name in ~/.devswitchrc and the project's file would merge two profiles into one."""
    user, project = tmp_path / "user.rc", tmp_path / ".devswitchrc"
    user.write_text("profiles:\n  fast:\n    xla: true\n")
    with pytest.raises(UsageError) as info:
        profiles.check(project, "fast", (user, project))
    parts(info, UsageError, named=["'fast'", f"({user}:2:3)"], fix="--save-profile")
    profiles.check(project, "faster", (user, project))


@pytest.mark.parametrize("name", ["123", "true", "false", "null", "yes", "No", "on", "~", ".inf", "-.inf", ".nan",
                                  "0x1F", "0o17", "1e3", "1_000", "0b11", "", "a b", "-x", "...", "---", "a" * 65,
                                  "naïve"])
def test_names_yaml_would_not_read_back_as_text_are_refused(name):
    with pytest.raises(UsageError, match="--save-profile"):
        profiles.check_name(name)


@pytest.mark.parametrize("name", ["fast", "gpu-fast", "cpu_bf16", "v1.2", "NaN", "n", "_x", "9lives"])
def test_plain_names_are_accepted(name):
    profiles.check_name(name)


def test_save_profile_adds_to_a_users_file_and_keeps_everything_else(tmp_path):
    from _devswitch.config import resolve

    rc = tmp_path / ".devswitchrc"
    rc.write_text("# my settings\ndevice: cpu   # keep me\nprofiles:\n    old:\n        precision: fp16\n")
    profiles.add(rc, "fastest", {"device": "cpu", "precision": "half"}, "from compare")
    text = rc.read_text()
    assert text.startswith("# my settings\ndevice: cpu   # keep me\nprofiles:\n") and "    old:\n" in text
    cfg = resolve({"DEVSWITCH_PROFILE": "fastest"}, tmp_path / "home", tmp_path)
    assert (cfg.device, cfg.precision, cfg["precision"].source) == ("cpu", "half", "project file (profile fastest)")
    with pytest.raises(UsageError) as info:
        profiles.add(rc, "fastest", {"device": "gpu"}, "again")
    parts(info, UsageError, named=["'fastest'", f"{rc}:"], fix="--save-profile")  # the name, where it is defined
    fresh = tmp_path / "new" / ".devswitchrc"
    fresh.parent.mkdir()
    profiles.add(fresh, "p", {"backend": "jax", "device": "cpu", "precision": "fp32"}, "x")
    assert resolve({"DEVSWITCH_PROFILE": "p"}, tmp_path / "home", fresh.parent).backend == "jax"
    flow = tmp_path / "flow" / ".devswitchrc"
    flow.parent.mkdir()
    flow.write_text("profiles: {a: {device: cpu}}\n")
    with pytest.raises(UsageError) as info:
        profiles.add(flow, "b", {"device": "cpu"}, "x")
    parts(info, UsageError, named=[str(flow), "'profiles:'", "{...}"])
    assert flow.read_text() == "profiles: {a: {device: cpu}}\n"


# --- which file ---------------------------------------------------------------------------------------------

def test_the_file_is_where_the_configuration_comes_from(tmp_path):
    home, project = tmp_path / "home", tmp_path / "home" / "proj"
    (project / "sub" / "deeper").mkdir(parents=True)
    assert profiles.target({}, home, project / "sub") == project / "sub" / ".devswitchrc"  # none: here
    (project / ".devswitchrc").write_text("precision: bf16\n")
    assert profiles.target({}, home, project / "sub" / "deeper") == project / ".devswitchrc"  # the parent's
    (home / ".devswitchrc").write_text("device: cpu\n")
    assert profiles.target({}, home, home) == home / ".devswitchrc"  # in home, the user file is the one
    one, two = tmp_path / "one.yaml", tmp_path / "two.yaml"
    one.write_text("")
    two.write_text("")
    assert profiles.target({"DEVSWITCHRC": f"{one}:{two}"}, home, project) == two  # the last one read
    if os.path.exists(os.devnull):
        with pytest.raises(UsageError) as info:
            profiles.target({"DEVSWITCHRC": os.devnull}, home, project)
        parts(info, UsageError, where="DEVSWITCHRC", named=["DEVSWITCHRC"], fix="unset it")


# --- compare --save-profile, in process, with a stand-in for the workers -------------------------------------

def _cell(precision, batch, rate, ci=None, status="ok", device="cpu"):
    from _devswitch.compare import Cell

    if status != "ok":
        return Cell("tensorflow", device, precision, batch, status)
    low, high = ci or (rate * 0.95, rate * 1.05)
    record = {"metrics": {"throughput": {"value": rate, "ci": [low, high], "ci_coverage": 0.95}}}
    return Cell("tensorflow", device, precision, batch, "ok", precision, record)


def _results(cells, batches, **kwargs):
    from _devswitch.compare import ResultSet
    from _devswitch.compare.resultset import Model

    return ResultSet(options={"batch_sizes": list(batches), "backends": ["tensorflow"], "target": "mlp",
                              "baseline": "tensorflow cpu fp32"}, model=Model("mlp", "m", unit="samples"),
                     cells=tuple(cells), **kwargs)


# batch 64 (given first) is won by half, batch 2 (given last) by fp32
CLEAR = [_cell("fp32", 64, 100.0), _cell("half", 64, 190.0), _cell("fp32", 2, 50.0), _cell("half", 2, 20.0)]


def _compare(monkeypatch, tmp_path, cwd, results, *args):
    """``devswitch compare`` in this process, the matrix replaced by ``results``; (exit code, stderr)."""
    import _devswitch.compare as compare
    import _devswitch.render.outputs as outputs

    seen = {}

    def run_matrix(options, progress, workdir, on_update=None):
        seen["ran"] = True
        return results

    monkeypatch.setattr(compare, "run_matrix", run_matrix)
    monkeypatch.setattr(outputs, "write_outputs", lambda results, out, plot=True: [])
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir(exist_ok=True)
    monkeypatch.chdir(cwd)
    out = tmp_path / f"out-{len(list(tmp_path.glob('out-*')))}"
    code = main(["compare", "mlp", "--devices", "cpu", "--precisions", "fp32,half", "--batch-sizes", "64,2",
                 "--out", str(out), *args])
    return code, seen.get("ran", False), out


def test_the_winner_at_the_largest_batch_is_saved_into_the_parents_file_and_read_back_in_the_subfolder(
        tmp_path, monkeypatch, capsys):
    """From project/sub, with project/.devswitchrc: the profile goes into the parent's file (no
    sub/.devswitchrc that would hide it), it is batch 64's winner though 2 was given last, and the
    parent's own settings still apply in the subfolder."""
    from _devswitch.config import resolve

    project = tmp_path / "home" / "project"
    (project / "sub").mkdir(parents=True)
    (project / ".devswitchrc").write_text("threads: 2   # the parent's\n")
    code, ran, _ = _compare(monkeypatch, tmp_path, project / "sub", _results(CLEAR, [64, 2]),
                            "--save-profile", "fast")
    err = capsys.readouterr().err
    assert (code, ran) == (0, True), err
    assert not (project / "sub" / ".devswitchrc").exists()
    assert "saved profile 'fast' (device=cpu, precision=half: recommended at batch 64, the largest: faster than " \
           f"the baseline, decisively) to {project / '.devswitchrc'}" in err
    assert "# devswitch compare mlp: cpu half, recommended at batch 64 (190.0 samples/s, 1.90x the baseline, " \
           "cpu fp32)" in (project / ".devswitchrc").read_text()
    cfg = resolve({"DEVSWITCH_PROFILE": "fast"}, tmp_path / "home", project / "sub")
    assert (cfg.precision, cfg["precision"].source) == ("half", "project file (profile fast)")
    assert cfg["threads"].source == "project file" and cfg.threads.intra == 2  # the parent's own setting


@pytest.mark.parametrize("cells, kwargs, reason", [
    pytest.param(CLEAR[:1] + [_cell("half", 64, 0, status="interrupted")] + CLEAR[2:], {"interrupted": True},
                 "the run was interrupted; the run is incomplete at batch 64 (cpu half: interrupted); cpu fp32 is "
                 "the only configuration measured at batch 64: nothing to compare it with",
                 id="interrupted"),
    pytest.param([_cell("fp32", 64, 100.0), _cell("half", 64, 0, status="failed: OOM")] + CLEAR[2:], {},
                 "the run is incomplete at batch 64 (cpu half: failed: OOM); cpu fp32 is the only configuration "
                 "measured at batch 64: nothing to compare it with", id="a failed cell"),
    pytest.param([_cell("fp32", 64, 100.0, (90, 110)), _cell("half", 64, 104.0, (95, 112))] + CLEAR[2:], {},
                 "the recommendation does not decide (keep the baseline: no significant difference between the "
                 "fastest measured, cpu half, and the baseline, cpu fp32: 1.04x, their 95% intervals overlap)",
                 id="not significant"),
])
def test_nothing_is_saved_from_a_run_that_cannot_tell_unless_asked(tmp_path, monkeypatch, capsys, cells, kwargs,
                                                                   reason):
    results = _results(cells, [64, 2], **kwargs)
    code, _, _ = _compare(monkeypatch, tmp_path, tmp_path, results, "--save-profile", "fast")
    err = capsys.readouterr().err
    assert code == (130 if results.interrupted else 5 if "failed" in reason else 0)  # as without --save-profile
    assert f"profile 'fast' not saved: {reason}" in err and "--save-profile-anyway" in err
    assert not (tmp_path / ".devswitchrc").exists()
    code, _, _ = _compare(monkeypatch, tmp_path, tmp_path, results, "--save-profile", "fast", "--save-profile-anyway")
    err = capsys.readouterr().err
    assert "saved profile 'fast'" in err and f"although {reason} (--save-profile-anyway)" in err
    assert f"; saved with --save-profile-anyway: {reason}" in (tmp_path / ".devswitchrc").read_text()


def test_unavailable_configurations_do_not_make_a_run_incomplete(tmp_path, monkeypatch, capsys):
    cells = CLEAR + [_cell("fp32", b, 0, status="unavailable: no GPU", device="gpu") for b in (64, 2)]
    code, _, _ = _compare(monkeypatch, tmp_path, tmp_path, _results(cells, [64, 2]), "--save-profile", "fast")
    assert code == 0 and "saved profile 'fast'" in capsys.readouterr().err


@pytest.mark.parametrize("setup, args, message", [
    pytest.param(None, ["--save-profile", "123"], "YAML reads this name as 123", id="a number"),
    pytest.param(None, ["--save-profile", "true"], "YAML reads this name as True", id="a boolean"),
    pytest.param(None, ["--save-profile", "~"], "not a plain name", id="null"),
    pytest.param(None, ["--save-profile-anyway"], "--save-profile-anyway saves nothing without", id="anyway alone"),
    pytest.param("profiles: {a: {device: cpu}}\n", ["--save-profile", "b"], "flow style", id="flow style"),
    pytest.param("device: cpu\n---\n", ["--save-profile", "b"], "another document", id="two documents"),
    pytest.param("profiles:\n  b: {device: cpu}\n", ["--save-profile", "b"], "already defined", id="taken"),
    pytest.param(0o444, ["--save-profile", "b"], "read-only (mode 0444)", id="read-only file"),
    pytest.param(0o555, ["--save-profile", "b"], "read-only, mode 0555", id="read-only folder"),
])
def test_a_profile_that_could_not_be_saved_is_refused_before_anything_runs(tmp_path, monkeypatch, capsys, setup,
                                                                         args, message):
    project = tmp_path / "project"
    project.mkdir()
    if isinstance(setup, str):
        (project / ".devswitchrc").write_text(setup)
    elif setup == 0o444:
        (project / ".devswitchrc").write_text("device: cpu\n")
        (project / ".devswitchrc").chmod(0o444)
    before = snapshot(tmp_path)
    if setup == 0o555:
        project.chmod(0o555)
    started = time.monotonic()
    try:
        code, ran, out = _compare(monkeypatch, tmp_path, project, _results(CLEAR, [64, 2]), *args)
    finally:
        project.chmod(0o755)
    err = capsys.readouterr().err
    assert (code, ran) == (2, False) and message in err and "Traceback" not in err, err
    assert time.monotonic() - started < 5 and not out.exists() and ".tmp" not in err
    assert snapshot(tmp_path) == {**before, tmp_path / "home": "dir"}


def test_devswitchrc_saves_into_its_last_file(tmp_path, monkeypatch, capsys):
    one, two = tmp_path / "team.yaml", tmp_path / "mine.yaml"
    one.write_text("device: cpu\n")
    two.write_text("# mine\n")
    monkeypatch.setenv("DEVSWITCHRC", f"{one}{os.pathsep}{two}")
    code, _, _ = _compare(monkeypatch, tmp_path, tmp_path, _results(CLEAR, [64, 2]), "--save-profile", "fast")
    assert code == 0 and f"to {two}" in capsys.readouterr().err
    assert one.read_text() == "device: cpu\n" and "  fast:\n" in two.read_text()
    assert not (tmp_path / ".devswitchrc").exists()


# --- real runs ----------------------------------------------------------------------------------------------

@pytest.mark.subprocess
def test_compare_saves_the_winner_as_a_profile_the_switch_then_runs(shared_compare):
    """The shared run (cpu fp32 vs fp16 measured, GPU unavailable, 3 samples): its winner at batch 8 is
    saved when its lead is significant, and otherwise it says why not, and saves nothing."""
    from _devswitch.config import resolve

    assert "Recommendation, batch 8:" in shared_compare.proc.stdout
    doc = json.loads((shared_compare.out / "results.json").read_text())
    if "saved profile 'fastest'" not in shared_compare.proc.stderr:
        assert "profile 'fastest' not saved: the recommendation does not decide" in shared_compare.proc.stderr
        assert not (shared_compare.project / ".devswitchrc").exists()
        return
    cfg = resolve({"DEVSWITCH_PROFILE": "fastest"}, shared_compare.home, shared_compare.project)
    assert cfg["precision"].source == "project file (profile fastest)"
    at_largest = [c for c in doc["cells"] if c["batch"] == 8 and c["status"] == "ok"]
    best = max(at_largest, key=lambda c: c["record"]["metrics"]["throughput"]["value"])
    assert (cfg.device, cfg.precision) == (best["device"], best["precision"])  # the winner at the largest batch


@pytest.mark.subprocess
def test_two_concurrent_compare_runs_save_both_profiles_into_the_parents_file(profile_compares):
    """Two real `devswitch compare --save-profile` runs side by side, each in its own subfolder of one project:
    both profiles land in the project's file (next to its comment and settings), none in the subfolders."""
    from _devswitch.config import resolve
    from _devswitch.rcfile import read_file

    tmp_path = profile_compares.root  # the project (conftest._profile_compares): a/ and b/ in it
    rc = tmp_path / ".devswitchrc"
    for name, profile in (("a", "first"), ("b", "second")):
        proc, folder = profile_compares(name)
        assert proc.returncode == 0, proc.stderr
        assert f"saved profile '{profile}' (device=cpu, precision=fp32: although cpu fp32 is the only " \
               f"configuration measured at batch 4: nothing to compare it with" in proc.stderr
        assert not (folder / ".devswitchrc").exists()
    assert set(read_file(rc, "project file").profiles) == {"first", "second"}
    assert rc.read_bytes().startswith(b"# the project's settings\r\nthreads: 1\r\n") and b"\n" not in \
        rc.read_bytes().replace(b"\r\n", b"")
    cfg = resolve({"DEVSWITCH_PROFILE": "second"}, tmp_path / "b" / "home", tmp_path / "b")
    assert (cfg.precision, cfg["threads"].source, cfg.threads.intra) == ("fp32", "project file", 1)
