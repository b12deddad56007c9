"""Where an export is written: a staging directory beside DIR, renamed to DIR when complete.

Everything is written into `.tfgpt2-export-<pid>-*` beside DIR and renamed to DIR at the end; a previous
export at DIR waits under a staging name until the new one is in place, and is put back if that rename
fails (`replace`). What a killed export leaves (staging directories of a process that is gone) is
removed, or put back, by the next export to DIR (`recover`).
"""

import os
import shutil

STAGING = ".tfgpt2-export-"  # + pid + random suffix: the staging directory beside --out


def replace(tmp, out):
    """Renames the finished export `tmp` to `out`. A previous `out` waits beside it (a staging name)
    until the new one is in place, is put back if that rename fails, and is removed after."""
    if not os.path.lexists(out):
        os.rename(tmp, out)
        return
    old = os.path.join(os.path.dirname(out), f"{STAGING}{os.getpid()}-previous-{os.path.basename(out)}")
    os.rename(out, old)
    try:
        os.rename(tmp, out)
    except BaseException:
        os.rename(old, out)
        raise
    _remove(old)


def recover(out):
    """Cleans up beside `out` after exports that were killed: the staging directories of processes
    that are gone are removed, except a previous export whose place is empty (killed between the two
    renames of `replace`), which is put back."""
    parent = os.path.dirname(out)
    for name in sorted(os.listdir(parent)) if os.path.isdir(parent) else ():
        pid, _, rest = name[len(STAGING):].partition("-")
        if not name.startswith(STAGING) or (pid.isdigit() and _alive(int(pid))):
            continue
        path, previous = os.path.join(parent, name), rest[len("previous-"):] if rest.startswith("previous-") else ""
        if previous and not os.path.lexists(os.path.join(parent, previous)):
            os.rename(path, os.path.join(parent, previous))
        else:
            shutil.rmtree(path, ignore_errors=True)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def replaceable(path):
    """What --overwrite may replace: an export (it has model.json) or an empty directory."""
    if os.path.isdir(path):
        return os.path.exists(os.path.join(path, "model.json")) or not os.listdir(path)
    return False


def _remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        os.remove(path)
