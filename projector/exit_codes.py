"""The projector's exit codes, which whatever runs it (and its supervisor) acts on."""

EXIT_FAILED = 1
"""The consumer failed, or (supervising) a worker kept failing; or an export stopped midway."""
EXIT_CANNOT_START = 2
"""Bad settings or arguments, or a dependency needed to start is unreachable or refuses us."""
EXIT_CONTRADICTION = 3
"""An event contradicts the read model: nothing of its batch was applied."""
EXIT_REBUILD_FAILED = 4
"""The rebuild failed; the live model is untouched."""
