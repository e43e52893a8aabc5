"""The rule-based teacher scores in the rubric's direction."""
from climb_spark.stages.quality.heuristic_teacher import rubric_scores

CLEAN = ("Photosynthesis is the process by which green plants convert light energy into chemical "
         "energy. It takes place in the chloroplasts, which contain chlorophyll. The light reactions "
         "split water and release oxygen, while the Calvin cycle fixes carbon dioxide into sugars. "
         "Because plants are primary producers, this process supports almost every food chain.")


PROMO = ("BUY NOW!!! Huge SALE on all shoes, free shipping and a bonus coupon! Click here: "
         "www.best-deals.example/shop to order today, limited offer, $9.99 only, cheap prices!!!")


GARBLED = "x7$ ;; ### qq zzk ~~ 0x0 @@ 123 456 ::: vvv vvv vvv ^^ %% &&"


def test_teacher_follows_the_rubric_direction():
    clean, promo, garbled = rubric_scores(CLEAN), rubric_scores(PROMO), rubric_scores(GARBLED)
    assert all(0 <= v <= 5 for s in (clean, promo, garbled) for v in s.values())
    assert clean["advertisement"] == 5 and promo["advertisement"] <= 1
    assert clean["quality"] >= 4 > garbled["quality"]
    assert clean["educational_value"] > promo["educational_value"]
    assert clean["informational_value"] > garbled["informational_value"]
