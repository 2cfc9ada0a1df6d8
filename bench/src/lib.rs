//! Shared pieces of the benchmarks: latency summaries printed as Markdown rows for
//! `bench/RESULTS.md`.

use std::time::Duration;

/// p50 / p95 / p99 / max of a set of samples.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    pub count: usize,
    pub p50: Duration,
    pub p95: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Summary {
    pub fn of(samples: &mut [Duration]) -> Self {
        samples.sort_unstable();
        let at = |q: f64| {
            let index = ((samples.len() as f64 - 1.0) * q).round() as usize;
            samples.get(index).copied().unwrap_or_default()
        };
        Self { count: samples.len(), p50: at(0.50), p95: at(0.95), p99: at(0.99), max: at(1.0) }
    }

    /// `p50 / p95 / p99 / max` in milliseconds.
    pub fn row(&self) -> String {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        format!(
            "{:.1} / {:.1} / {:.1} / {:.1} ms (n={})",
            ms(self.p50),
            ms(self.p95),
            ms(self.p99),
            ms(self.max),
            self.count
        )
    }
}
