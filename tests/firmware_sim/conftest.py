from tests.rig.fixtures import *  # noqa: F403
