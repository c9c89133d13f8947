"""python -m ppl.grammar: rebuild the stored parser tables (gm.tables) after editing gm.lark."""
from ppl.grammar.tables import write

print(f"wrote {write()}")
