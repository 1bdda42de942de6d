"""Event cameras, every speed target of issue 16 in one go: the simulated DVS against a per-frame
numpy peer (bench/dvs_sim_speed.py), the eDVS parser against a per-byte Python parser
(bench/dvs_edvs_speed.py), AEDAT4 write/read against dv-processing and faery and the store's
event append (bench/dvs_io_speed.py). Each part runs ours and the peer side by side in one
process and prints the ratios; run a part alone for its options.

    python bench/dvs_speed.py            # all three, one after another
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

HERE = Path(__file__).parent
PARTS = ("dvs_sim_speed.py", "dvs_edvs_speed.py", "dvs_io_speed.py")

if __name__ == "__main__":
    for part in PARTS:
        print(f"\n=== bench/{part} ===", flush=True)
        sys.argv = [str(HERE / part)]
        runpy.run_path(str(HERE / part), run_name="__main__")
