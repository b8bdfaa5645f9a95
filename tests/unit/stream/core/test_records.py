import numpy as np
import orjson

from stream.core.records import Recommendation, UserProfile


def _profile(score: float) -> UserProfile:
    return UserProfile(
        user_id="u1",
        items=(Recommendation(item_id="sku-1", score=score, reason=None),),
        vector=np.zeros(4, dtype=np.float32),
        model_version="m",
        window_version="w",
        window_newest_ts_ms=1,
        window_newest_event_id="e1",
    )


def test_payload_scores_carry_float32_precision_not_its_noise() -> None:
    # What the computer hands over: a float32 score turned into a Python float by tolist().
    score = np.asarray([0.8234], dtype=np.float32).tolist()[0]
    assert score != 0.8234  # the noise this guards against
    encoded = orjson.dumps(_profile(score).payload(computed_at_ms=0))
    assert b'"score":0.8234,' in encoded


def test_scores_above_one_are_kept_as_they_are() -> None:
    # cosine + prior + co-occurrence term: ordering, not a probability.
    assert _profile(1.0625).payload(computed_at_ms=0)["items"][0]["score"] == 1.0625
