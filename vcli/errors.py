"""Every failure a user can hit, each with its exit code, and vcli's exit codes (``ExitCode``).

The engine raises these; exactly one layer of the CLI (``vcli.cli._common.run``) turns them into an
``Error: …`` line on stderr and an exit code. ``code`` is the Vectorize API error code for the same
situation, so a REST front end can answer as Cloudflare does.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Every exit status of a vcli process (docs/contract.md, "Errors and exit codes")."""

    OK = 0
    FAILURE = 1  # a failure the user can fix (a ``VcliError``), a system error, anything unexpected
    DIFFERENT = 1  # ``vcli diff``: the two sides differ (as diff(1) says it)
    USAGE = 2  # wrong usage: Click's own (an unknown flag, a missing argument, a bad option value)
    REPAIRED = 3  # ``vcli check --repair`` found problems and repaired them all
    INTERRUPTED = 130  # Ctrl-C (128 + SIGINT, as shells report it)


class VcliError(Exception):
    """Base class: a failure the user can fix. Exit code 1."""

    exit_code = ExitCode.FAILURE
    code = 1000  # generic Vectorize "bad request"
    http_status = 400
    notes: tuple[str, ...] = ()  # things worth telling the user that arose before the failure
    # The live service's own words for this failure, where they are known and differ from ours:
    # what ``vcli serve`` answers (a Worker or a client tested against it sees what production says).
    service_message: str | None = None

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def said_by_the_service_as(self, text: str) -> VcliError:
        self.service_message = text
        return self


class InvalidName(VcliError):
    code = 3001


class IndexNotFound(VcliError):
    code = 3000
    http_status = 404

    def __init__(self, name: str):
        super().__init__(f'index "{name}" not found')
        self.name = name


class IndexExists(VcliError):
    code = 3002
    http_status = 409

    def __init__(self, name: str):
        super().__init__(f'index "{name}" already exists')
        self.name = name


class InvalidConfig(VcliError):
    """Bad dimensions, metric or preset at create time."""

    code = 3003


class BadInput(VcliError):
    """A bad NDJSON line: names the line number, the id when known, and what is wrong."""

    code = 40023

    def __init__(self, reason: str, line: int | None = None, vector_id: str | None = None):
        where = []
        if line is not None:
            where.append(f"line {line}")
        if vector_id is not None:
            where.append(f'id "{vector_id}"')
        prefix = f"{', '.join(where)}: " if where else ""
        super().__init__(prefix + reason)
        self.reason = reason
        self.line = line
        self.vector_id = vector_id


class DimensionMismatch(BadInput):
    code = 40012


class BadQuery(VcliError):
    """A bad query vector or option (wrong dimensions, non-finite numbers, unknown vector id)."""

    code = 40006


class LimitExceeded(VcliError):
    code = 40025


class MetadataTooLarge(BadInput):
    """Metadata over 10 KiB: production answers 40016 (as two public reports show; Cloudflare's
    documentation names no code)."""

    code = 40016


class TooManyVectors(VcliError):
    """More vectors in one insert or upsert request than the REST API takes (5,000). Production's
    answer is not known; vcli answers with 40007, the code of too many ids in one request."""

    code = 40007


class QuotaExceeded(VcliError):
    """An account or index holds as many indexes or namespaces as the configured cap allows
    (production's code is not known: the generic 1000)."""

    code = 1000


class TooManyIds(VcliError):
    """More ids in one get_by_ids / delete_by_ids request than Vectorize takes (``vcli serve``)."""

    code = 40007


class BadFilter(VcliError):
    code = 40003


class MetadataIndexError(VcliError):
    code = 40020


class LockTimeout(VcliError):
    """Another writer held the index for longer than the lock timeout."""

    code = 40029
    http_status = 409


class StorageError(VcliError):
    """The disk said no: full, read-only, no permission, file too large."""

    code = 1001
    http_status = 500


class ConfigError(VcliError):
    """A bad config file, key or value."""


class IndexDamaged(StorageError):
    """``vcli check`` found problems that were not (or could not be) repaired."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C at a moment when the index is not simply as it was before the command (its write
    was already saved); carries the sentence to show instead of the usual one."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


# == embedding models (vcli.embeddings) ===========================================================
# ``code`` is Workers AI's internal code for the same failure where it has one (5007 "No such
# model", 5006 a bad input); ``vcli serve`` maps these onto the AI binding's and REST's answers.
class UnknownModel(VcliError):
    """A model name vcli does not compute; the message names the ones it does."""

    code = 5007

    def __init__(self, model: str, served: tuple[str, ...], what: str = "model"):
        super().__init__(f'no such {what} "{model}": vcli computes {", ".join(served)}')
        self.model = model


class ModelNotPulled(VcliError):
    """A model vcli computes whose files are not on disk yet."""

    code = 5007
    http_status = 503

    def __init__(self, model: str, where: str):
        super().__init__(f"the model {model} is not on disk (looked in {where}): "
                         f"run `vcli models pull {model}` first")
        self.model = model


class ModelDamaged(VcliError):
    """The files of a pulled model differ from what was pulled (a partial or corrupt copy)."""

    code = 5007
    http_status = 503


class BadModelFolder(VcliError):
    """``vcli models pull --from DIR``: the folder does not hold a model vcli can use as this one."""


class DownloadFailed(VcliError):
    """``vcli models pull``: the download did not finish or did not match its checksum."""

    http_status = 502


class AiExtraMissing(VcliError):
    """ONNX Runtime or tokenizers is not installed."""

    code = 5007
    http_status = 503

    def __init__(self, missing: str):
        super().__init__(f"embedding models need the optional 'ai' extra ({missing} is not installed): "
                         "pip install 'vcli[ai]'")


class BadEmbedInput(VcliError):
    """Texts Workers AI would refuse: none, an empty one, more than 100, a bad ``pooling``."""

    code = 5006


class NoModel(VcliError):
    """Text given for an index that does not say which model embeds it."""
