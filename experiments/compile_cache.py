"""JAX's persistent compilation cache, on by default: a program compiled once is read back from disk by
every later run that compiles it again (same program, backend and versions), instead of recompiled.

    python -m experiments.train ...                                   # cache in the user's cache folder
    python -m benchmarks.tables ... --compilation_cache=/scratch/jax  # elsewhere (say, a shared disk)
    python -m benchmarks.tables ... --compilation_cache=off           # not at all
    RNNLAB_COMPILATION_CACHE=off python -m ...                        # the same, for every entry point

The folder: `--compilation_cache`, else the environment variable RNNLAB_COMPILATION_CACHE, else
`$XDG_CACHE_HOME/rnnlab/jax` (`~/.cache/rnnlab/jax` without XDG_CACHE_HOME). Every program is cached,
however small or quick to compile (JAX's own thresholds, 1 s of compile time, would skip most of a
small run's programs). `enable` writes its choice back into RNNLAB_COMPILATION_CACHE, so the worker
processes of a sweep (local or Slurm) use the same folder. JAX keys each entry by the program,
backend, device kind, flags and versions: an entry never serves a different program. Delete the
folder to clear it.
"""

import os
from pathlib import Path

ENV = "RNNLAB_COMPILATION_CACHE"
OFF = ("off", "none", "0", "false", "")
_EVENTS = {"/jax/compilation_cache/cache_hits": "hits", "/jax/compilation_cache/cache_misses": "misses"}
_COUNTS = {"hits": 0, "misses": 0}
_LISTENING: list[bool] = []


def default_folder() -> Path:
    """`$XDG_CACHE_HOME/rnnlab/jax`, or `~/.cache/rnnlab/jax`."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "rnnlab" / "jax"


def resolve(value: str | None = None) -> Path | None:
    """The cache folder `value` (a flag's) names, else RNNLAB_COMPILATION_CACHE's, else `default_folder()`;
    None when it says off."""
    if value is None:
        value = os.environ.get(ENV)
    if value is None:
        return default_folder()
    return None if value.strip().lower() in OFF else Path(value).expanduser()


def enable(value: str | None = None, flag: str = "compilation_cache") -> Path | None:
    """Point JAX's persistent compilation cache at `resolve(value)` (or turn it off); returns the folder.
    Call before the first compilation. A folder that cannot be created is a ConfigError naming `--flag`."""
    import jax

    from experiments.config import ConfigError

    folder = resolve(value)
    os.environ[ENV] = str(folder) if folder is not None else "off"
    if folder is None:
        jax.config.update("jax_enable_compilation_cache", False)
        return None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        writable = os.access(folder, os.W_OK)
    except OSError as e:
        raise ConfigError(f"--{flag}={folder}: cannot create it ({e.strerror or e}); or pass --{flag}=off") from None
    if not writable:
        raise ConfigError(f"--{flag}={folder}: not writable; give another folder or --{flag}=off")
    jax.config.update("jax_enable_compilation_cache", True)
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)  # every entry, whatever its size
    _listen()
    return folder


def _listen() -> None:
    """Count the cache's hits and misses (JAX reports them as monitoring events)."""
    if _LISTENING:
        return
    import jax

    def on_event(event: str, **kwargs: object) -> None:
        if event in _EVENTS:
            _COUNTS[_EVENTS[event]] += 1

    jax.monitoring.register_event_listener(on_event)
    _LISTENING.append(True)


def counts() -> dict[str, int]:
    """{"hits": programs read from the cache, "misses": programs compiled and written} so far in this process."""
    return dict(_COUNTS)
