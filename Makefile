# wam_ros: two commands do everything on a fresh machine.
#   make demo   set up (if needed) and run the simulated robot with the full node graph
#   make test   set up (if needed) and run the test suite
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

.PHONY: setup test lint demo clean

setup:
	@bash $(ROOT)/tools/setup.sh

test: setup
	cd $(ROOT) && $(PY) -m ruff check wam_ros tools
	cd $(ROOT) && $(PY) -m pytest wam_ros/test $(PYTEST_ARGS)

lint: setup
	cd $(ROOT) && $(PY) -m ruff check wam_ros tools

demo: setup
	cd $(ROOT) && $(VENV)/bin/wam-ros demo

clean:
	rm -rf $(ROOT)/build $(VENV)
