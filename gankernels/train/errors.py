"""The one error type the CLI turns into a one-line message (bad flags, data, checkpoints)."""


class ConfigError(ValueError):
    """A user-facing problem with the run's configuration, data or files; the message says what to fix."""


def require_op(name: str, purpose: str):
    """``gankernels.<name>``, or a ConfigError saying that ``purpose`` needs it and this build lacks it."""
    import gankernels

    fn = getattr(gankernels, name, None)
    if fn is None:
        raise ConfigError(f"{purpose} needs gankernels.{name}, which this build does not have yet "
                          "(docs/MATH.md §3–4); update gankernels or choose another option")
    return fn


def one_line(exc: BaseException, limit: int = 160) -> str:
    """``Type: first line of the message``, without terminal escapes, shortened at a word boundary."""
    import re

    text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", str(exc)).strip()
    text = (text.splitlines() or [""])[0].strip()
    if len(text) > limit:
        text = text[:limit].rsplit(" ", 1)[0].rstrip(" ,;:.") + " ..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
