"""Per-post classification (issue 8): which classifier runs, and the classification version.

``CLASSIFICATION_VERSION`` is stamped on ``posts.classification_version`` when a post is
classified. Raise it when a prompt, lexicon or rule change makes old classifications worth
redoing: every post below it becomes eligible again (``cannect backfill reclassify``), and
until it is reclassified a post keeps its old classification.
"""

from __future__ import annotations

from typing import Callable

#: Posts classified below this version are reclassified by the backfill; see the module doc.
CLASSIFICATION_VERSION = 1

#: Posts per message with the offline classifier, unless ``CLASSIFY_BATCH_SIZE`` says otherwise.
OFFLINE_BATCH = 100


class ClassifierUnavailable(RuntimeError):
    """``CLASSIFIER=llm`` without ``DEEPSEEK_API_KEY``: refuse rather than silently run offline."""


def uses_llm(settings) -> bool:
    """Whether the configuration asks for the LLM classifier (``CLASSIFIER``, ``DEEPSEEK_API_KEY``)."""
    choice = getattr(settings, "classifier", "auto")
    return choice == "llm" or (choice == "auto" and bool(settings.deepseek_api_key))


def batch_size(settings) -> int:
    """Posts per ``classify`` message: ``CLASSIFY_BATCH_SIZE``, else one LLM request's worth
    (``LLM_BATCH_SIZE``), or :data:`OFFLINE_BATCH` offline (no request to fill: larger messages
    spread each message's writes over more posts)."""
    if settings.classify_batch_size:
        return settings.classify_batch_size
    return settings.llm_batch_size if uses_llm(settings) else OFFLINE_BATCH


def get_classifier(settings, redis_client=None, record_call: Callable | None = None, **llm_options):
    """The configured classifier: the LLM one when ``DEEPSEEK_API_KEY`` is set, else the offline one.

    ``settings.classifier`` (``CLASSIFIER``) forces one: ``llm`` or ``offline``; ``auto`` (the
    default) decides by the key. ``llm_options`` go to ``LlmClassifier.from_settings``. Imports
    are lazy: the offline path never loads the ``openai`` client.
    """
    if uses_llm(settings):
        if not settings.deepseek_api_key:
            raise ClassifierUnavailable("CLASSIFIER=llm needs DEEPSEEK_API_KEY")
        from .llm import LlmClassifier

        return LlmClassifier.from_settings(settings, redis_client, record_call, **llm_options)
    from .offline import OfflineClassifier

    return OfflineClassifier.from_settings(settings)
