//! L1-hit resolution: `Host` header → servable tenant when the in-process cache has it (host
//! normalisation, cache lookup, generation check, status check). Criterion, against a real
//! catalog for the first load.
//!
//! Run with `BENCHES=resolve make bench` (or `cargo bench -p tenancy-bench --bench resolve`
//! with the services' environment).

#![allow(clippy::unwrap_used)]

use criterion::{criterion_group, criterion_main, Criterion};
use std::sync::Arc;
use std::time::Duration;
use tenant_router::resolve::Resolver;

fn resolve(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (_db, resolver) = runtime.block_on(async {
        let (db, common, cp) = tenancy_bench::control_plane_with_settings().await;
        let tenant = control_plane::tenants::create(
            &cp,
            &control_plane::tenants::TenantRequest::new("acme", "starter"),
            "bench",
        )
        .await
        .unwrap();
        control_plane::jobs::provision::provision(&cp, tenant.id).await.unwrap();
        let catalog = tenancy::pg::pool(
            &tenancy::pg::parse_config(
                common.database_url().unwrap().expose(),
                &tenancy::pg::CaBundle::none(),
            )
            .unwrap(),
            4,
        )
        .unwrap();
        let resolver = Resolver::new(
            common.tenant_base_domain.clone(),
            catalog,
            100_000,
            Duration::from_secs(3600),
            Duration::from_secs(2),
            None,
            Arc::new(tenant_router::metrics::RouterMetrics::default()),
        );
        // The first lookup loads from the catalog; every one after is an L1 hit.
        resolver.resolve(Some("acme.app.localhost")).await.unwrap();
        (db, resolver)
    });
    c.bench_function("L1 hit: acme.app.localhost", |b| {
        b.to_async(&runtime).iter(|| resolver.resolve(Some("acme.app.localhost")));
    });
    c.bench_function("L1 hit: ACME.App.Localhost:443 (normalised first)", |b| {
        b.to_async(&runtime).iter(|| resolver.resolve(Some("ACME.App.Localhost:443")));
    });
}

criterion_group!(benches, resolve);
criterion_main!(benches);
