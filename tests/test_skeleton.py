import numpy as np
import pytest

from vidpose.data.skeleton import COCO, POSETRACK, Skeleton, get_skeleton


@pytest.mark.parametrize("skeleton", [POSETRACK, COCO], ids=lambda s: s.name)
def test_flip_permutation_is_an_involution_that_swaps_left_and_right(skeleton):
    permutation = skeleton.flip_permutation
    np.testing.assert_array_equal(permutation[permutation], np.arange(skeleton.num_joints))
    for joint, name in enumerate(skeleton.joint_names):
        partner = skeleton.joint_names[permutation[joint]]
        if name.startswith("left_"):
            assert partner == "right_" + name[5:]
        elif name.startswith("right_"):
            assert partner == "left_" + name[6:]
        else:
            assert partner == name


def test_posetrack_slots_follow_the_spec():
    assert POSETRACK.num_joints == 17
    assert POSETRACK.joint_names[1:3] == ("head_bottom", "head_top")
    assert POSETRACK.scored_indices.tolist() == [0, 1, 2, *range(5, 17)]
    assert len(POSETRACK.scored_indices) == 15
    groups = POSETRACK.groups
    assert list(groups) == ["Head", "Shou", "Elb", "Wri", "Hip", "Knee", "Ankl"]
    grouped = sorted(j for slots in groups.values() for j in slots)
    assert grouped == POSETRACK.scored_indices.tolist()


def test_coco_matches_pycocotools_sigmas():
    from pycocotools.cocoeval import Params

    np.testing.assert_allclose(COCO.sigmas, Params(iouType="keypoints").kpt_oks_sigmas)


@pytest.mark.parametrize("skeleton", [POSETRACK, COCO], ids=lambda s: s.name)
def test_limbs_connect_the_whole_body(skeleton):
    # every scored joint is reachable from the nose through limbs
    reached, frontier = {0}, [0]
    while frontier:
        joint = frontier.pop()
        for a, b in skeleton.limbs:
            for here, there in ((a, b), (b, a)):
                if here == joint and there not in reached:
                    reached.add(there)
                    frontier.append(there)
    assert set(skeleton.scored_indices.tolist()) <= reached
    assert len(skeleton.limb_colors) == len(skeleton.limbs)


def test_lookup_errors_name_the_choices():
    assert get_skeleton("coco") is COCO
    with pytest.raises(KeyError, match="unknown skeleton 'mpii'; expected one of: posetrack, coco"):
        get_skeleton("mpii")
    with pytest.raises(KeyError, match="has no joint 'neck'"):
        POSETRACK.index("neck")
    assert POSETRACK.index("left_wrist") == 9


def test_inconsistent_skeleton_is_rejected():
    with pytest.raises(ValueError, match="sigmas has 1 entries, expected one per joint"):
        Skeleton(
            name="bad",
            joint_names=("a", "b"),
            flip_pairs=(),
            limbs=((0, 1),),
            sigmas=(0.1,),
            scored=(True, True),
            joint_colors=((0, 0, 0), (0, 0, 0)),
            limb_colors=((0, 0, 0),),
        )
