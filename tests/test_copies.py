"""Copy evidence (inpdiff.copies, inpdiff.near_copies): exact copies inside a photo are found, and
near copies after a JPEG re-save; real photos and their JPEG re-saves are (almost) not marked, a real
exemplar tool's fill is found, and the localizer fuses the map."""
import shutil

import cv2
import numpy as np
import pytest
from conftest import ROOT
from sklearn.metrics import roc_auc_score

from inpdiff import copies, near_copies
from inpdiff.copies import CopySettings, block_hashes, copy_cover, copy_map, raise_to_copies
from inpdiff.near_copies import near_copy_cover
from inpdiff.spill import spill_array
from inpdiff.data.augment import jpeg
from inpdiff.data.fills import tools
from inpdiff.io import read_image
from inpdiff.runtime.localizer import Localizer, LocalizeConfig

PHOTO = ROOT / "examples" / "images" / "astronaut_pristine.png"
EXACT = CopySettings(near=())


def pasted(image: np.ndarray, src=(40, 300), dst=(300, 80), size=48) -> tuple[np.ndarray, np.ndarray]:
    """The photo with a square of itself copied elsewhere, and the copy's mask."""
    out, mask = image.copy(), np.zeros(image.shape[:2], bool)
    out[dst[0]:dst[0] + size, dst[1]:dst[1] + size] = image[src[0]:src[0] + size, src[1]:src[1] + size]
    mask[dst[0]:dst[0] + size, dst[1]:dst[1] + size] = True
    return out, mask


def test_equal_blocks_have_equal_hashes_and_others_differ():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    img[12:16, 20:24] = img[2:6, 3:7]
    h = block_hashes(img)
    assert h.shape == (17, 27)
    assert h[12, 20] == h[2, 3]
    assert len(np.unique(h)) == h.size - 1  # every other block of random pixels is distinct


def test_a_pasted_region_is_marked_and_the_real_photo_is_not():
    photo = read_image(PHOTO)
    assert copy_map(photo, EXACT).max() == 0.0  # a real photo: no textured block occurs twice
    edited, mask = pasted(photo)
    m = copy_map(edited, EXACT)
    core = np.zeros_like(mask)
    core[310:338, 90:118] = True
    assert m[core].min() >= 0.81
    # The paste meets the photo around it at a seam and its source does not: only the paste is marked.
    source = np.roll(core, (40 - 300, 300 - 80), axis=(0, 1))
    assert m[source].max() == 0.0
    assert m[cv2.dilate(mask.astype(np.uint8), np.ones((61, 61), np.uint8)) == 0].max() == 0.0
    # Without the seam rule both ends are marked (pixels alone cannot say which came first); nothing else.
    m = copy_map(edited, CopySettings(near=(), seam_pairs=0))
    assert m[core].min() >= 0.81 and m[source].min() >= 0.81
    both = mask | np.roll(mask, (40 - 300, 300 - 80), axis=(0, 1))
    assert m[cv2.dilate(both.astype(np.uint8), np.ones((61, 61), np.uint8)) == 0].max() == 0.0


def reference_near_cover(image: np.ndarray, s: near_copies.NearCopySettings) -> np.ndarray:
    """near_copy_cover as its docstring defines it, pair by pair: no bands, passes or first test."""
    B, n = near_copies.B, len(near_copies.PAIRS)
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.int64)
    blocks = np.lib.stride_tricks.sliding_window_view(gray, (B, B))
    h, w = blocks.shape[:2]
    if s.blur:  # the features' gray summed over 2x2, 0 past the photo's edge (var and clip: the gray's)
        g = np.pad(gray, ((0, 1), (0, 1)))
        summed = np.lib.stride_tricks.sliding_window_view(g[:-1, :-1] + g[1:, :-1] + g[:-1, 1:] + g[1:, 1:], (B, B))
    K = near_copies.KERNELS.astype(np.int64)
    F = np.stack([np.einsum("yxij,i,j->yx", summed if s.blur else blocks, K[v], K[u])
                  for u, v in (near_copies.RAMP_FREE if s.ramp_free else near_copies.PAIRS)], -1).reshape(-1, n)
    var = (B * B * (blocks ** 2).sum((2, 3)) - blocks.sum((2, 3)) ** 2).ravel()
    ok = (var >= (B * B * s.min_std) ** 2) & (blocks.min((2, 3)) >= s.clip).ravel() & (blocks.max((2, 3)) <= 255 - s.clip).ravel()
    idx = np.flatnonzero(ok)
    k = F[idx, :3] // s.q
    idx = idx[np.lexsort((idx, k[:, 2], k[:, 1], k[:, 0]))]
    sd = np.sqrt(var.astype(np.float64)) / (B * B)
    alike, pairs = [], []
    for i in range(len(idx)):
        for j in range(i + 1, min(i + 1 + s.window, len(idx))):
            a, b = idx[i], idx[j]
            if F[a, 0] // s.q != F[b, 0] // s.q:
                continue
            if float(((F[a] - F[b]).astype(np.float64) ** 2).sum()) > (s.abs_tol + s.rel_tol * min(sd[a], sd[b])) ** 2:
                continue
            alike += [a, b]
            (ay, ax), (by, bx) = divmod(min(a, b), w), divmod(max(a, b), w)
            if abs(by - ay) >= s.min_distance or abs(bx - ax) >= s.min_distance:
                pairs.append((min(a, b), max(a, b), (by - ay, bx - ax)))
    count = {}
    for a in alike:
        count[a] = count.get(a, 0) + 1
    kept = {(p, d) for p, q, d in pairs if count[p] <= s.max_matches and count[q] <= s.max_matches}
    cover = np.zeros(gray.shape, np.uint8)
    for p, d in kept:
        y, x = divmod(p, w)
        near = sum((((y + ey) * w + x + ex), d) in kept for ey in (-1, 0, 1) for ex in (-1, 0, 1)
                   if (ey or ex) and 0 <= y + ey < h and 0 <= x + ex < w)
        if near >= s.support:
            cover[y:y + B, x:x + B] = 1
            cover[y + d[0]:y + d[0] + B, x + d[1]:x + d[1] + B] = 1
    return cover


@pytest.mark.parametrize("search", [0, 1], ids=["gray", "gray summed over 2x2"])
def test_near_copies_equal_their_definition_pair_by_pair(search):
    """The search's shortcuts (bands, a first test on two features, sorting keys only, 9x9 kernels for
    the 2x2 sums) change nothing."""
    edited, _ = pasted(read_image(PHOTO), src=(350, 140), dst=(60, 380))
    crop = jpeg(edited[20:150, 330:470], 85)  # the pasted patch and its surroundings, re-saved
    crop = np.concatenate([crop, jpeg(edited[330:460, 110:250], 85)], axis=1)  # and its source
    s = CopySettings().near[search]
    expected = reference_near_cover(crop, s)
    assert expected.sum() > 500  # the re-saved copy is found, so the comparison has matches to agree on
    assert np.array_equal(near_copy_cover(crop, s), expected)


def test_a_jpeg_resave_breaks_exact_copies_and_near_copies_find_them():
    photo = read_image(PHOTO)
    edited, mask = pasted(photo, src=(350, 140), dst=(60, 380))  # the mission patch, onto the backdrop
    core = np.zeros_like(mask)
    core[70:98, 390:418] = True
    source = np.roll(core, (350 - 60, 140 - 380), axis=(0, 1))
    for quality in (90, 75):
        saved = jpeg(edited, quality)
        assert copy_map(saved, EXACT).max() < 0.81  # exact equality does not survive the re-save
        m = copy_map(saved)
        assert m[core].min() >= 0.81
        assert m[source].max() == 0.0  # the seam tells the paste from its source
        # The real photo and its re-save: a few lookalike blocks, far from the 1% an analyst would see.
        for clean in (photo, jpeg(photo, quality)):
            assert (copy_map(clean) >= 0.65).mean() < 0.003


def test_the_search_of_2x2_sums_finds_harder_resaves():
    """JPEG's noise is fine and averages out of the 2x2 sums: at quality 75 the gray's search covers
    0.38 of the paste and the two searches 0.70; at 60, 0 and 0.19."""
    edited, mask = pasted(read_image(PHOTO), src=(350, 140), dst=(60, 380))
    gray_only = CopySettings(near=CopySettings().near[:1])
    for quality in (75, 60):
        saved = jpeg(edited, quality)
        assert copy_cover(saved)[mask].mean() > copy_cover(saved, gray_only)[mask].mean() + 0.15


def test_ramp_free_features_find_a_copy_whose_brightness_was_corrected():
    """A healing brush adds a smooth field to its copy, close to a plane over a block: the RAMP_FREE
    features do not see it, the smooth ones do (0.60 of the paste found against 0.07)."""
    edited, mask = pasted(read_image(PHOTO), src=(350, 140), dst=(60, 380))
    yy, xx = np.mgrid[0:edited.shape[0], 0:edited.shape[1]]
    ramp = (12 + 0.4 * (xx - 380) + 0.25 * (yy - 60))[..., None]
    healed = np.where(mask[..., None], np.clip(edited + ramp, 0, 255), edited).astype(np.uint8)
    assert near_copy_cover(healed, near_copies.NearCopySettings(ramp_free=True))[mask].mean() > 0.5
    assert near_copy_cover(healed, near_copies.NearCopySettings(ramp_free=False))[mask].mean() < 0.15


def test_near_pairs_of_an_offset_that_few_share_are_dropped(monkeypatch):
    """A lookalike or two is what pristine photos have; a copied area gives many pairs of one offset."""
    few = [(10, 10, 10, 60), (11, 10, 11, 60)]  # two pairs at offset (0, 50): dropped
    many = [(100, 20 + x, 140, 30 + x) for x in range(3)]  # three at offset (40, 10): kept, both ends
    monkeypatch.setattr(copies, "near_pairs", lambda image, s, stop: np.array(few + many if not s.blur else many[:1], np.int64))
    cover = copy_cover(np.zeros((200, 200, 3), np.uint8))  # flat: no exact copies of its own
    expected = np.zeros((200, 200), np.uint8)
    for y, x, y2, x2 in many:
        expected[y:y + 8, x:x + 8] = expected[y2:y2 + 8, x2:x2 + 8] = 1
    np.testing.assert_array_equal(cover, expected)
    assert copy_cover(np.zeros((200, 200, 3), np.uint8), CopySettings(near_min_pairs=1))[10:18, 10:18].all()
    assert not copy_cover(np.zeros((200, 200, 3), np.uint8), CopySettings(near_min_pairs=4)).any()  # each pair counted once


def test_near_copies_pass_over_straight_edges_and_patterns():
    """A long straight edge and a periodic pattern repeat by nature; a block alike to more than two
    others is one of them, whatever the distance."""
    edge = np.zeros((200, 300, 3), np.uint8)
    edge[:100] = 40
    edge[100:] = 210
    edge = (edge + np.random.default_rng(1).integers(0, 3, edge.shape)).astype(np.uint8)  # a little noise
    pattern = np.tile(np.random.default_rng(0).integers(0, 256, (8, 12, 3), dtype=np.uint8), (25, 25, 1))
    for img in (edge, pattern):
        assert near_copy_cover(img).max() == 0
    assert near_copy_cover(pattern, near_copies.NearCopySettings(max_matches=10**9)).max() == 1  # what stops it


def test_bands_and_sorting_passes_do_not_change_the_map(monkeypatch):
    """Memory is bounded by computing a band of rows and a share of the hashes at a time; the map
    must be the one the whole image gives at once."""
    edited, _ = pasted(cv2.resize(read_image(PHOTO), (900, 700), interpolation=cv2.INTER_CUBIC), (500, 700), (100, 60), 96)
    whole = np.minimum(cv2.GaussianBlur(copy_cover(edited).astype(np.float32), (0, 0), 6.0) * np.float32(2), 1)
    assert whole.max() == 1.0
    near = [near_copy_cover(edited, n) for n in CopySettings().near]
    assert all(n.any() for n in near)
    monkeypatch.setattr(copies, "BAND", 97)
    monkeypatch.setattr(copies, "HASH_BLOCKS", 97 * 897)  # rows of 897 blocks
    monkeypatch.setattr(copies, "PASS_BLOCKS", 50_000)  # 16 passes
    monkeypatch.setattr(near_copies, "BAND_BLOCKS", 61 * 893)  # rows of 893 blocks
    monkeypatch.setattr(near_copies, "PASS_BLOCKS", 40_000)  # passes of whole first key parts
    for n, cover in zip(CopySettings().near, near):
        np.testing.assert_array_equal(near_copy_cover(edited, n), cover)
    np.testing.assert_array_equal(copy_map(edited), whole)
    assert near_copy_cover(np.full((300, 300, 3), 200, np.uint8)).max() == 0  # passes with nothing to pass over



def test_a_search_asked_to_stop_ends_at_its_next_band_and_one_never_asked_gives_the_same_map(monkeypatch):
    """A stopping run must not wait for a photo's copy search (20 s at 48 MP): the search asks
    `stop()` between bands, chunks and passes, in every stage, and ends at the first True."""
    edited, _ = pasted(cv2.resize(read_image(PHOTO), (900, 700), interpolation=cv2.INTER_CUBIC), (500, 700), (100, 60), 96)
    expected = copy_cover(edited)
    monkeypatch.setattr(copies, "HASH_BLOCKS", 97 * 897)
    monkeypatch.setattr(copies, "PASS_BLOCKS", 50_000)
    monkeypatch.setattr(near_copies, "BAND_BLOCKS", 61 * 893)
    monkeypatch.setattr(near_copies, "PASS_BLOCKS", 40_000)
    monkeypatch.setattr(near_copies, "CHUNK", 20_000)
    never = Asked()
    np.testing.assert_array_equal(copy_cover(edited, stop=never), expected)
    assert never.times > 50
    for k in sorted({*np.linspace(1, never.times, 8).astype(int).tolist()}):
        stop = Asked(stop_at=k)
        with pytest.raises(near_copies.Stopped):
            copy_cover(edited, stop=stop)
        assert stop.times == k  # not asked again once it said stop


class Asked:
    """A search's `stop`: counts how often it is asked, and says stop the `stop_at`th time."""

    def __init__(self, stop_at: int = 0):
        self.times, self.stop_at = 0, stop_at

    def __call__(self) -> bool:
        self.times += 1
        return self.times == self.stop_at
def test_flat_repetitive_and_drawn_areas_are_not_copies():
    flat = np.full((64, 64, 3), 200, np.uint8)
    pattern = np.tile(np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8), (8, 8, 1))
    for img in (flat, pattern, np.zeros((3, 3, 3), np.uint8), np.zeros((9, 9, 3), np.uint8)):
        assert copy_map(img).max() == 0.0
    assert copy_map(pattern, CopySettings(max_group=10**9, near=())).max() > 0  # the cap is what stops a pattern
    # A caption on a photo repeats its letters exactly; runs of one colour mark it as drawn.
    captioned = read_image(PHOTO).copy()
    for y in (60, 140, 300, 420, 480):
        cv2.putText(captioned, "Happy birthday Anna! see you soon", (5, y), cv2.FONT_HERSHEY_SIMPLEX, 0.8,
                    (255, 255, 255), 2, cv2.LINE_AA)
    assert copy_map(captioned).max() < 0.81
    assert copy_map(captioned, CopySettings(max_equal_pairs=25, near=())).max() >= 0.81  # what the rule stops


@pytest.mark.skipif(shutil.which("gmic") is None, reason="G'MIC is not installed (apt-get install gmic)")
def test_a_real_exemplar_fill_is_found():
    """G'MIC's patch-based inpainting (GIMP's engine) fills a hole with the photo's own patches."""
    photo = read_image(PHOTO)
    hole = np.zeros(photo.shape[:2], bool)
    hole[220:280, 250:330] = True
    filled = tools.gmic(photo, hole, np.random.default_rng(0))
    changed = np.any(filled != photo, axis=2)
    m = copy_map(filled)
    assert roc_auc_score(changed.ravel(), m.ravel()) > 0.9 and (m[changed] >= 0.81).mean() > 0.3


def fuse(prob: np.ndarray, image: np.ndarray, s: CopySettings = CopySettings()) -> np.ndarray:
    return raise_to_copies(prob.copy(), copy_cover(image, s), s)


def test_the_network_map_is_lifted_near_copies_then_raised_to_the_copy_map():
    """Near copies the network's map is lifted by up to `lift`, relative to the photo's densest
    copies; far from them nothing changes; without the lift the fusion is the plain maximum."""
    edited, _ = pasted(read_image(PHOTO))  # 512 x 512: whole 8x8 cells
    cover = copy_cover(edited)
    net = np.full(cover.shape, 0.3, np.float32)
    plain = raise_to_copies(net.copy(), cover, CopySettings(lift=0.0))
    np.testing.assert_array_equal(plain, np.maximum(net, copy_map(edited)))
    lifted = raise_to_copies(net.copy(), cover)
    share = cv2.resize(cover.astype(np.float32), (64, 64), interpolation=cv2.INTER_AREA)  # each cell's mean
    density = cv2.GaussianBlur(share, (0, 0), 6.0)
    term = np.kron(CopySettings().lift * density / density.max(), np.ones((8, 8), np.float32))
    np.testing.assert_allclose(lifted, np.maximum(np.minimum(net + term, 1), copy_map(edited)), atol=1e-6)
    assert (lifted[term == 0] == 0.3).all() and (term == 0).mean() > 0.05  # beyond the blur's reach: untouched
    ring = (term > 0.2) & (plain < 0.5)  # near the copies, where the copy map is low
    assert ring.any() and (lifted[ring] > 0.5).all()
    assert np.array_equal(raise_to_copies(net.copy(), np.zeros_like(cover)), net)  # no copies: untouched


def test_the_network_map_picks_the_end_of_a_copy_whose_seam_says_nothing():
    """A healed-looking copy (a smooth change of brightness over it, re-saved): the seam rule keeps both
    ends; given the network's map, the end where it is higher by pick_margin is kept alone, and a map
    that cannot tell them apart keeps both."""
    photo = read_image(PHOTO)
    ramp = np.linspace(-12, 12, 100, dtype=np.float32)[None, :, None]
    photo[300:400, 260:360] = np.clip(photo[40:140, 40:140].astype(np.float32) + ramp, 0, 255).astype(np.uint8)
    healed = jpeg(photo, 70)
    found = copies.find_copies(healed)
    assert len(found.pairs) >= CopySettings().pick_pairs and found.keep.all()  # the seam says nothing here
    source, paste = (slice(40, 140), slice(40, 140)), (slice(300, 400), slice(260, 360))
    both = copy_cover(healed)
    assert both[source].any() and both[paste].any()
    prob = np.full(healed.shape[:2], 0.1, np.float32)
    for high, low in ((paste, source), (source, paste)):
        p = prob.copy()
        p[high] = 0.6
        picked = copy_cover(healed, prob=p)
        assert picked[high].any() and not picked[low].any()
        assert np.array_equal(copy_cover(healed, prob=spill_array(p)), picked)  # a map held in a file, as a large photo's
    p = prob.copy()
    p[paste], p[source] = 0.6, 0.45  # a mean less than 1.5 times the other's
    assert np.array_equal(copy_cover(healed, prob=p), both)
    assert np.array_equal(copy_cover(healed, CopySettings(pick_pairs=0), prob=prob + 0.5 * (np.arange(512) > 256)), both)


def test_the_localizer_raises_its_map_to_the_copy_evidence():
    edited, mask = pasted(read_image(PHOTO))
    with Localizer(ROOT / "models" / "edge-c", config=LocalizeConfig(copies=False)) as plain:
        before = plain.localize(edited)
    with Localizer(ROOT / "models" / "edge-c") as fused:
        after = fused.localize(edited)
    np.testing.assert_array_equal(after.prob, fuse(before.prob, edited))
    with Localizer(ROOT / "models" / "edge-c") as fused:  # planning alone (INT8 calibration's use) starts no search
        plan = fused.plan(edited)
        assert plan.copies is None
        maps = fused.infer(np.stack([plan.tile(i) for i in range(len(plan.origins))]), plan.origins)
        np.testing.assert_array_equal(fused.assemble(plan, maps).prob, after.prob)  # found at assembly instead
    assert after.mask[mask].mean() > before.mask[mask].mean() + 0.3
    # The analyst sees why: the region over the copy says how much of it is copied; its source, which
    # the seam rule leaves unmarked, has no copied region.
    assert all(r.copied is None for r in before.regions)
    def copied_at(y, x):
        return [r.copied for r in after.regions if r.bbox[0] <= x < r.bbox[0] + r.bbox[2] and r.bbox[1] <= y < r.bbox[1] + r.bbox[3]]
    assert copied_at(324, 104)[0] > 0.5 and not any(copied_at(64, 324))


def test_the_localizer_leaves_near_copies_out_when_told():
    edited, _ = pasted(read_image(PHOTO), src=(350, 140), dst=(60, 380))
    saved = jpeg(edited, 90)
    with Localizer(ROOT / "models" / "edge-c", config=LocalizeConfig(copies=False)) as plain:
        alone = plain.localize(saved).prob
    with Localizer(ROOT / "models" / "edge-c", config=LocalizeConfig(near_copies=False)) as exact:
        np.testing.assert_array_equal(exact.localize(saved).prob, fuse(alone, saved, EXACT))
    with Localizer(ROOT / "models" / "edge-c") as both:
        np.testing.assert_array_equal(both.localize(saved).prob, fuse(alone, saved))


def test_the_pytorch_harness_adds_it_too_unless_told_not_to(tiny_export):
    """`inpdiff eval CHECKPOINT` and `inpdiff lomo` score what users get; training's curves do not."""
    from inpdiff.model import load_model
    from inpdiff.training.evaluate import torch_predict

    model = load_model(tiny_export[0] / "ckpt")
    edited, _ = pasted(read_image(PHOTO))
    alone, _ = torch_predict(model)(edited)
    fused, _ = torch_predict(model, copies=True)(edited)
    np.testing.assert_array_equal(fused, fuse(alone, edited))
    assert (fused > alone).any()


def test_copy_growth_correlation_equals_its_definition_window_by_window():
    """copy_growth's box sums give, at every pixel, the sums of its docstring over the two squares."""
    from inpdiff import copy_growth

    rng = np.random.default_rng(3)
    image = cv2.GaussianBlur(rng.integers(0, 256, (40, 52, 3), dtype=np.uint8), (0, 0), 1.0)
    s = copy_growth.GrowSettings(radius=2)
    box, (dy, dx) = (3, 30, 5, 40), (6, -4)
    a = copy_growth._residual(image, box[0] - 2, box[1] + 2, box[2] - 2, box[3] + 2).astype(np.float64)
    sa, va = copy_growth._own_sums(a, s.radius)
    c, vb, inside = copy_growth._correlation(image, a, sa, box, (dy, dx), s)
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.int64)
    padded = np.pad(gray, 3)
    H, W = gray.shape

    def R(y, x):  # 49 x the 3x3 sum less 9 x the 7x7 sum, gray 0 past the edge
        return 49 * padded[y + 2:y + 5, x + 2:x + 5].sum() - 9 * padded[y:y + 7, x:x + 7].sum()

    checked = 0
    for y in range(*box[:2]):
        for x in range(*box[2:]):
            ok = all(2 <= v < n - 2 for v, n in ((y, H), (y + dy, H), (x, W), (x + dx, W)))
            assert inside[y - box[0], x - box[2]] == ok
            if not ok:
                continue
            a = np.array([R(y + i, x + j) for i in range(-2, 3) for j in range(-2, 3)])
            b = np.array([R(y + dy + i, x + dx + j) for i in range(-2, 3) for j in range(-2, 3)])
            n = len(a)
            assert c[y - box[0], x - box[2]] == n * (a * b).sum() - a.sum() * b.sum()
            assert va[y - box[0], x - box[2]] == n * (a * a).sum() - a.sum() ** 2
            assert vb[y - box[0], x - box[2]] == n * (b * b).sum() - b.sum() ** 2
            checked += 1
    assert checked > 300


def test_copy_growth_grows_a_resaved_copy_and_not_a_periodic_pattern():
    """A few pairs name a copy's offset: growth covers the rest of the copy, re-saved at JPEG 70, where
    the near-copy search found part of it; a pattern that repeats at that offset is not grown."""
    from inpdiff.copy_growth import GrowSettings, grow

    edited = jpeg(pasted(read_image(PHOTO), (40, 40), (300, 260), 100)[0], 70)
    before, after = copy_cover(edited, CopySettings(grow=None)), copy_cover(edited)
    assert after[300:400, 260:360].mean() > before[300:400, 260:360].mean() + 0.04
    assert (after >= before).all() and after[:250].sum() == before[:250].sum()  # grown at the paste only
    np.testing.assert_array_equal(copy_cover(spill_array(edited)), after)  # a photo held in a file: the same

    rng = np.random.default_rng(0)
    texture = cv2.GaussianBlur(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8), (0, 0), 0.7)
    periodic = np.tile(texture, (8, 8, 1))  # 256 x 256, period 32
    pairs = np.array([[100 + 8 * i, 100, 100 + 8 * i, 132] for i in range(6)], np.int64)  # offset (0, 32)
    keep = np.ones((6, 2), bool)
    # periodic above 1: no correlation reaches it (an exact period correlates at 1), so the check is off
    for settings, grown in ((GrowSettings(), False), (GrowSettings(periodic=1.01), True)):
        cover = np.zeros((256, 256), np.uint8)
        grow(periodic, cover, pairs, keep, settings)
        assert (cover.mean() > 0.05) == grown  # the box: the pairs grown by 32 pixels, 10% of the pattern
