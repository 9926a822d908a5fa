"""Topic and service names and QoS profiles: the one place that defines them.

The graph's own names are relative, so they resolve in the namespace the graph is launched in
(`namespace:=robot1` -> /robot1/wam/observation): two robots share one DDS domain without
remapping. /diagnostics and /clock stay global, as every ROS tool expects them. The robot's
topics (cameras, joint states, controllers: config/robots/*.yaml) resolve in the same namespace
(`robot_topic`); in the root namespace they are exactly the configured names.
"""

from __future__ import annotations

from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)

OBSERVATION = "wam/observation"
CHUNK_RAW = "wam/chunk/raw"  # policy output: latent | delta | absolute
CHUNK_JOINT = "wam/chunk/joint"  # decoder output: absolute joint positions, timed
# sensor_msgs/TimeReference from the smoother per chunk it splices: header.stamp = when,
# time_ref = the chunk's stamp (its observation's); the policy learns its hand-off latency
CHUNK_APPLIED = "wam/chunk/applied"
ESTOP = "wam/estop"  # std_msgs/Bool, True = stop (latched until re-enabled)
COMMANDED = "wam/commanded"  # sensor_msgs/JointState: what the smoother sends, for plots/tests
# sensor_msgs/TimeReference from the smoother with the first command of each new plan:
# header.stamp = that command's stamp (its /wam/commanded message's), time_ref = the stamp of
# the observation the plan was computed from. End-to-end latency (camera -> arm) is the
# difference; demo, eval, the benches and the tests measure it on this topic.
PLAN_STARTED = "wam/chunk/started"
DIAGNOSTICS = "/diagnostics"
CLOCK = "/clock"

RESET_SERVICE = "wam/reset"  # std_srvs/Trigger: new episode (policy memory cleared)
ENABLE_SERVICE = "wam/enable"  # std_srvs/Trigger: clear a latched e-stop
# std_srvs/SetBool: false = pause the policy (no inference, results in flight dropped);
# true = start a new episode (memory cleared) and run
RUN_SERVICE = "wam/policy/run"
HOME_SERVICE = "wam/home"  # std_srvs/Trigger: smoother replaces the plan by a move home
# std_msgs/String, JSON (core.types.InputContract): the cameras and image size the loaded
# policy takes; latched, the observation node sizes its output from it
POLICY_INPUT = "wam/policy/input"
SIM_STATUS = "wam/sim/status"  # std_msgs/String, JSON (sim.mujoco_sim.SimStatus)
SIM_RESET = "wam/sim/reset"  # std_srvs/Trigger: new episode, scene re-randomised

def robot_topic(name: str) -> str:
    """A topic of the robot config, resolved in the node's namespace."""
    return name.lstrip("/")


def qualified(namespace: str, name: str) -> str:
    """`name` as the node in `namespace` resolves it, for messages to an operator."""
    return name if name.startswith("/") else f"{namespace.rstrip('/')}/{name}"


# Cameras and joint states: newest data wins, a lost frame is better than a late one.
SENSOR_QOS = qos_profile_sensor_data

# Observations and chunks between our nodes: reliable, shallow (a stale chunk is useless).
CHUNK_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=2, reliability=ReliabilityPolicy.RELIABLE
)
APPLIED_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE
)
OBSERVATION_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE
)

# Commands to ros2_control: reliable, depth 1 (only the newest command matters).
COMMAND_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE
)

# E-stop: what our tools publish with: latched, so a node that starts after the stop was
# pressed still sees it.
ESTOP_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)
# What the e-stop is heard with: one subscription per profile, so that every publisher
# matches at least one of them, whatever its QoS. A transient-local subscription matches only
# transient-local publishers (and replays their latched stop to a late subscriber); a
# reliable volatile one matches every reliable publisher (a joystick, a PLC bridge, a default
# rclcpp/rclpy publisher); a best-effort one matches every publisher, best-effort ones included.
# A message heard twice is harmless: the stop is idempotent.
ESTOP_SUBSCRIPTION_QOS = (
    ESTOP_QOS,
    QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10,
               reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE),
    QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10,
               reliability=ReliabilityPolicy.BEST_EFFORT, durability=DurabilityPolicy.VOLATILE),
)

# The policy's input contract: latched, so an observation node that (re)starts later gets it.
CONTRACT_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)

# /clock from the simulator: reliable, only the newest time matters.
CLOCK_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)

# Bag playback (nodes/bag_player_node.py): reliable matches reliable and best-effort
# subscribers alike.
PLAYBACK_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10,
                          reliability=ReliabilityPolicy.RELIABLE)

# Frames filmed by the closed loop (apps/closed_loop.py): best effort as the cameras publish,
# 10 deep, so frames wait while the probe is busy.
FILM_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT)


def recording_qos(reliable: bool) -> QoSProfile:
    """What the recorder subscribes a topic with: reliable only when every publisher is (a
    reliable subscription would not match a best-effort publisher; a best-effort one matches
    both), 100 deep so that a burst waits instead of being lost."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100,
                      reliability=ReliabilityPolicy.RELIABLE if reliable
                      else ReliabilityPolicy.BEST_EFFORT)


# Recording (nodes/recorder_node.py): std_srvs/Trigger, except MARK (SetBool: true = success).
RECORD_START = "wam/record/start"
RECORD_STOP = "wam/record/stop"  # stop and keep the episode
RECORD_DISCARD = "wam/record/discard"
RECORD_MARK = "wam/record/mark_success"
RECORD_STATUS = "wam/record/status"  # std_msgs/String, JSON (RecorderStatus), 1 Hz
