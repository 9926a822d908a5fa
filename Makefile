# wam_ros: two commands do everything on a fresh machine.
#   make demo   set up (if needed) and run the simulated robot with the full node graph
#   make test   set up (if needed) and run the test suite, then the ROS 2 Jazzy tier
#   make test-fast   the unit tier only
SHELL := /bin/bash
ROOT := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
VENV := $(ROOT)/.venv
PY := $(VENV)/bin/python

# DDS discovery stays on this machine; images travel through an 8 MiB shared-memory segment.
export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST
export FASTDDS_DEFAULT_PROFILES_FILE := $(ROOT)/wam_ros/config/fastdds.xml
export RMW_IMPLEMENTATION := rmw_fastrtps_cpp
export MUJOCO_GL ?= egl
export PYTHONUNBUFFERED := 1

PYTEST_ARGS ?=
# JAZZY=0 leaves out the ROS 2 Jazzy tier (.venv/jazzy); CI runs it. JAZZY_PYTEST_ARGS replaces
# its default subset (tools/test_jazzy.sh), e.g. JAZZY_PYTEST_ARGS="-m ros" for the whole ROS tier.
JAZZY ?= 1
JAZZY_PYTEST_ARGS ?=

.PHONY: setup test test-fast test-jazzy lint demo clean

setup:
	@bash $(ROOT)/tools/setup.sh

test: setup
	cd $(ROOT) && $(PY) -m ruff check wam_ros tools
	cd $(ROOT) && $(PY) -m pytest wam_ros/test $(PYTEST_ARGS)
	@if [ "$(JAZZY)" = 1 ]; then $(MAKE) --no-print-directory test-jazzy; \
	else echo "[jazzy] not run (JAZZY=$(JAZZY))"; fi

# The unit tier (wam_ros/test/unit: no ROS, no processes): about a minute.
test-fast: setup
	cd $(ROOT) && $(PY) -m pytest wam_ros/test/unit $(PYTEST_ARGS)

# The ROS tier against ROS 2 Jazzy (rclpy 7.1.6) in its own venv; skipped with the reason where
# Jazzy's wheels cannot be installed.
test-jazzy:
	@bash $(ROOT)/tools/test_jazzy.sh $(JAZZY_PYTEST_ARGS)

lint: setup
	cd $(ROOT) && $(PY) -m ruff check wam_ros tools

demo: setup
	cd $(ROOT) && $(VENV)/bin/wam-ros demo

clean:
	rm -rf $(ROOT)/build $(VENV)
