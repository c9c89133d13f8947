// K-component Gaussian mixture: the same maths as mixture.gm
data { int<lower=1> N; int<lower=1> K; vector[N] y; }
parameters { simplex[K] w; ordered[K] mu; vector<lower=0>[K] sigma; }
model {
  vector[K] log_w = log(w);
  w ~ dirichlet(rep_vector(1, K));
  mu ~ normal(0, 10);
  sigma ~ normal(0, 2);
  for (n in 1:N) {
    vector[K] lps = log_w;
    for (k in 1:K) lps[k] += normal_lpdf(y[n] | mu[k], sigma[k]);
    target += log_sum_exp(lps);
  }
}
