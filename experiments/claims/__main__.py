"""`python -m experiments.claims`: rebuild the claims ledger (docs/CLAIMS.md) from docs/results/ (see ledger.py)."""

import sys

from experiments.claims.ledger import main

sys.exit(main())
