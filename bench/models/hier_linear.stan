// Hierarchical linear regression, non-centred: the same maths as hier_linear.gm (g is 1-based here)
data { int<lower=0> N; int<lower=1> J; array[N] int<lower=1, upper=J> g; vector[N] x; vector[N] y; }
parameters {
  real mu_a; real mu_b;
  real<lower=0> tau_a; real<lower=0> tau_b; real<lower=0> sigma;
  vector[J] z_a; vector[J] z_b;
}
model {
  vector[J] a = mu_a + tau_a * z_a;
  vector[J] b = mu_b + tau_b * z_b;
  mu_a ~ normal(0, 5); mu_b ~ normal(0, 5);
  tau_a ~ normal(0, 1); tau_b ~ normal(0, 1); sigma ~ normal(0, 1);
  z_a ~ normal(0, 1); z_b ~ normal(0, 1);
  y ~ normal(a[g] + b[g] .* x, sigma);
}
