"""`python -m wam_ros.cli ...`: the same as `wam-ros ...`."""

import sys

from wam_ros.cli import main

sys.exit(main())
