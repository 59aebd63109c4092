"""A request's tokenizer, checked before anything is stored: an `hf` tokenizer file must lie
under an allowed root (like a corpus) and load, with an end-of-document token. 422 with the
reason otherwise."""

from __future__ import annotations

from curation.mixture.tokenizer import (
    MixtureTokenizer,
    TokenizerError,
    TokenizerSpec,
    load_tokenizer,
)
from curation.sources.paths import SourceRejected, ensure_local_inside
from service.problems import Problem
from service.settings import Settings


def checked(spec: TokenizerSpec | None, settings: Settings) -> MixtureTokenizer:
    """The loaded tokenizer of a request (bytes when none is given)."""
    spec = spec or TokenizerSpec.model_validate({})
    if spec.path is not None:
        try:
            if "://" in spec.path or "\x00" in spec.path:
                raise SourceRejected(f"{spec.path!r}: a tokenizer is read from a local path")
            ensure_local_inside(spec.path, [str(r) for r in settings.effective_allowed_roots])
        except SourceRejected as exc:
            raise Problem(422, "source-rejected", "Tokenizer location refused", str(exc)) from None
    try:
        return load_tokenizer(spec)
    except TokenizerError as exc:
        raise Problem(422, "tokenizer-invalid", "The tokenizer cannot be used", str(exc)) from None
