"""Preview a built dataset: `python build_benchmarks/preview.py DATA.parquet --out DIR -n N` (HTML + PNG sheet)."""

import sys

from verl_ext.builder.preview import main

if __name__ == "__main__":
    sys.exit(main())
