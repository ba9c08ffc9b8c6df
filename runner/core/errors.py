"""Errors a user can act on. The app prints their message and exits non-zero, without a traceback."""
import errno
import re


class RunnerError(Exception):
    """Base class: the message says what was wrong, where, and what to do."""


class ConfigError(RunnerError):
    """A config value is out of range, unknown or inconsistent."""


class RunDirInUse(ConfigError):
    """Another process is training in the run dir (it holds the dir's lock)."""


class DataError(RunnerError):
    """A data file is missing, truncated, corrupt or fails its checksum."""


class DataChanged(DataError):
    """A data file changed while a run was reading it."""


class TrainingError(RunnerError):
    """Training cannot go on (for example the loss became NaN)."""


def describe_os_error(err: OSError) -> str | None:
    """One line for an OSError a user can act on (disk full, file too large, no permission), else None."""
    hints = {errno.ENOSPC: "free some space or choose another folder",
             errno.EDQUOT: "free some space or choose another folder",
             errno.EFBIG: "the file size limit (ulimit -f) was reached; raise it or choose another folder",
             errno.EACCES: "make it writable or choose another folder",
             errno.EPERM: "make it writable or choose another folder",
             errno.EROFS: "the file system is read-only; choose another folder",
             errno.ENOTDIR: "a file stands where a folder is needed; move it or choose another folder",
             errno.EEXIST: "a file stands where a folder is needed; move it or choose another folder",
             errno.EISDIR: "a folder stands where a file is needed",
             errno.ENAMETOOLONG: "a name in the path is longer than the file system allows; choose a shorter one"}
    if err.errno not in hints:
        return None
    where = err.filename or "a file"
    return f"cannot write {where}: {err.strerror}; {hints[err.errno]}"


def op_error_text(err) -> str:
    """The line of a TensorFlow error that says what went wrong (the one above the failing node's name)."""
    lines = [line for line in err.message.splitlines() if line.strip()]
    said = lines[-1] if lines else ""
    for i, line in enumerate(lines):
        if line.lstrip().startswith("[[") and i:
            said = lines[i - 1]
            break
    # Eager ops wrap the message: "{{function_node __wrapped__...}} truncated record at 95901 [Op:IteratorGetNext]"
    said = re.sub(r"\{\{.*?\}\}\s*|\s*\[Op:.*$", "", said).strip()
    return said or type(err).__name__


def as_runner_error(err: Exception) -> Exception:
    """Disk and permission errors become one-line RunnerErrors naming the path; anything else stays as it is."""
    if isinstance(err, OSError) and describe_os_error(err):
        return RunnerError(describe_os_error(err))
    return err
