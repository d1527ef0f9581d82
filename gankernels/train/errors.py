"""The one error type the CLI turns into a one-line message (bad flags, data, checkpoints)."""


class ConfigError(ValueError):
    """A user-facing problem with the run's configuration, data or files; the message says what to fix."""


def require_op(name: str, purpose: str):
    """``gankernels.<name>``, or a ConfigError saying that ``purpose`` needs it and this build lacks it."""
    import gankernels

    fn = getattr(gankernels, name, None)
    if fn is None:
        raise ConfigError(f"{purpose} needs gankernels.{name}, which this build does not have yet "
                          "(SPEC §3-4); update gankernels or choose another option")
    return fn
