"""Specific messages for common syntax errors, kept as data beside the grammar (like stanc3's
``parser.messages``): each entry maps ``(message, hint)`` to example bad inputs.

``ppl.parser`` explains a syntax error by finding an example that fails the same way: in the
same parser state, with the same set of acceptable tokens, on the same kind of token (lark's
``UnexpectedInput.match_examples``, with the examples' failures computed once). An exact
token match wins over a match on the token's kind. In a message, ``{token}`` is the
unexpected token (quoted) and ``{prev}`` the text of the token before it (plain text
replacement, so braces need no escaping).

To add a message: write one or more minimal inputs that fail where the new message should
appear, add them under the message here, and add a case to tests/bad/. An example that parses,
or fails somewhere else than intended, is reported by tests/test_bad_catalogue.py.
"""

_KEYWORDS_AT_START = ("data", "fn", "import", "for", "if", "return")

SYNTAX_ERRORS = {
    # ---- keywords used as names
    ("`{prev}` is a keyword and cannot be used as a name",
     "rename it, e.g. `{prev}_`"): [
        f"{kw}{rest}" for kw in _KEYWORDS_AT_START
        for rest in (" = 1", " ~ normal(0, 1)", ": real", "[1] = 2", " += 1")
    ],
    ("`target` is reserved for `target += EXPR`", "rename it, e.g. `target_`"): [
        "target = 1", "target ~ normal(0, 1)", "target: real", "target[1] = 2",
    ],

    # ---- statements
    ("`+=` only adds to the log density, as in `target += EXPR`",
     "define each name once, with `=` or `~`"): [
        "mu += 1", "x[1] += 2", "mu ~ normal(0, 1)\nmu += 1",
    ],
    ("a line holds an expression but no `=` or `~`",
     "write `name = EXPR` or `name ~ D(...)`; assignment is `=`, not `==` or `<-`"): [
        "x", "3", "x == 3", "f(x)", "x + 1", "x <- 3", "x[1]", "-x",
        "x\n", "3\n", "x == 3\n", "f(x)\n", "x + 1\n", "x <- 3\n", "x[1]\n", "-x\n",
    ],
    ("the distribution after `~` is missing", "write a distribution, e.g. `mu ~ normal(0, 1)`"): [
        "mu ~", "mu ~\n", "mu ~ = normal(0, 1)", "mu ~ ~ normal(0, 1)", "mu: real ~",
    ],
    ("a statement has one `~` or `=`; {token} starts a second one",
     "put each statement on its own line"): [
        "x ~ normal(0, 1) = 2", "x ~ normal(0, 1) ~ normal(0, 1)", "x = 1 = 2", "x = y ~ normal(0, 1)",
        "x = f(1) = 2", "x = f(1) ~ normal(0, 1)",
    ],
    ("the expression is missing after `=`", None): [
        "x = ", "x = \n", "x: real = ", "x = = 2", "data x: real = ",
    ],
    ("GM has no blocks: statements go at the top level of the file",
     "Stan's `data { }`, `parameters { }` and `model { }` blocks are not needed; "
     "declare inputs with `data NAME: TYPE`"): [
        "model {", "parameters {", "model {\n", "transformed parameters {",
    ],

    # ---- types
    ("a type follows the colon: `{prev}: real`", None): [
        "data x real", "data x = 3", "data x", "data x\n", "data x ~ normal(0, 1)",
    ],
    ("a type's shape goes in square brackets after it: `real[N]`", None): [
        "x: [N] real", "x: [3] real ~ normal(0, 1)", "data x: [N] real",
    ],
    ("a type's shape goes in square brackets: `{prev}[N]`, not `{prev}(N)`", None): [
        "x: real(N) ~ normal(0, 1)", "data x: real(N)", "x: real(3)",
    ],
    ("a shape lists at least one size: `real[N]`", "a scalar has no brackets: `real`"): [
        "x: real[]", "data x: real[]", "x: real[] ~ normal(0, 1)",
    ],
    ("a bound is written `lower=VALUE` or `upper=VALUE`", None): [
        "x: real<lower 0>", "x: real<lower: 0>", "data x: real<upper 1>",
    ],
    ("the bounds of a type end with `>`: `real<lower=0>`", None): [
        "x: real<lower=0 ~ normal(0, 1)", "x: real<lower=0", "x: real<lower=0\n",
        "x: real<lower=0 = 1", "data x: real<lower=0",
    ],

    # ---- expressions
    ("`if C then A` needs an `else`", "every `if` has both branches: `if C then A else B`"): [
        "y = if c then 1", "y = if c then f(1)", "y = if c then 1\n", "y = if c then x[1]",
        "y = if c then (1)", "y = if c then -1", "y = if c then 1 + 2", "y = if c then x'",
    ],
    ("`then` is missing after the condition of `if`", "write `if C then A else B`"): [
        "y = if c 1 else 2", "y = if c\n", "y = if c", "y = if c else 2", "y = if (c) 1 else 2",
        "y = if c > 0 1 else 2",
    ],
    ("an index is missing between `[` and `]`", "indexing is `x[i]`, `x[i, j]` or a slice `x[a:b]`"): [
        "x = a[]", "y ~ normal(a[], 1)",
    ],
    ("`|` separates the value from the parameters in `D_lpdf(x | ...)`; it is not an absolute value",
     "use `abs(x)`"): [
        "x = |a|", "x = |a| + 1", "target += |a|",
    ],

    # ---- loops, functions, imports
    ("a loop body goes in braces: `for t in range(a, b) { ... }`", None): [
        "for t in range(0, 3) m[t] = 1", "for t in range(0, 3)\nm[t] = 1",
    ],
    ("a loop is written `for t in range(a, b) { ... }`", None): [
        "for t = 0:3 {", "for t from 0 to 3 {", "for (t in 1:3) {",
    ],
    ("a loop runs over `range(a, b)`", "write `for t in range(a, b) { ... }` (b excluded)"): [
        "for t in 0:3 {", "for t in [0, 1, 2] {", "for t in 1 {",
    ],
    ("`range` takes a start and a stop: `range(a, b)`", "for 0, 1, ..., n - 1 write `range(0, n)`"): [
        "for t in range(3) {", "for t in range(N) {",
    ],
    ("`import` takes a module name, like `import glm`", "modules are `stdlib/NAME.gm` or `NAME.gm` beside "
     "the model; paths and strings are not allowed"): [
        "import 3", "import 2.5",
    ],
    ("a function's body is `= EXPR` or a block `{ ...; return EXPR }`", None): [
        "fn f(x) x", "fn f(x) return x", "fn f(x): x",
    ],
    ("a function's parameters are names: `fn f(a, b) = ...`", None): [
        "fn f(1) = 1", "fn f(x + 1) = 1", "fn f(x: real) = x",
    ],
}
