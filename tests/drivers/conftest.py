from tests.drivers.twin_sim import TOKEN_KEY, twin_sim  # noqa: F401
from tests.rig.fixtures import *  # noqa: F403
