//! Control-plane integration tests against the harness's real PostgreSQL (password-checked),
//! Redis and moto.

// A failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used)]

mod database;
mod deprovision;
mod fleet;
mod fleet_templates;
mod fleet_waves;
mod isolation;
mod lifecycle;
mod provisioning;
mod reader;
mod routers;

use control_plane::control_plane::ControlPlane;
use control_plane::jobs::provision::provision;
use control_plane::settings::ProvisioningSettings;
use control_plane::tenants::{self, TenantRequest};
use std::sync::Arc;
use tenancy::catalog::TenantRecord;
use tenancy::settings::CommonSettings;
use testkit::{workspace_root, TestDb};

pub fn provisioning(db: &TestDb) -> ProvisioningSettings {
    ProvisioningSettings::new(
        &db.role_prefix,
        workspace_root().join("migrations"),
        workspace_root().join("tenant-templates"),
    )
}

pub async fn start(db: &TestDb, common: &CommonSettings) -> Arc<ControlPlane> {
    ControlPlane::start(common, &provisioning(db)).await.unwrap_or_else(|e| panic!("{e}"))
}

pub fn request(slug: &str, plan: &str) -> TenantRequest {
    TenantRequest::new(slug, plan)
}

pub async fn create_active(cp: &ControlPlane, slug: &str) -> TenantRecord {
    let tenant = tenants::create(cp, &request(slug, "starter"), "test").await.unwrap();
    provision(cp, tenant.id).await.unwrap()
}

pub async fn password_of(cp: &ControlPlane, tenant: &TenantRecord) -> String {
    cp.secrets.get(&tenant.secret_name().unwrap()).await.unwrap().unwrap().password
}

pub async fn connect_as(
    db: &TestDb,
    user: &str,
    password: &str,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(
        &db.database_url_as(&db.tenants_database(), user, password),
        tokio_postgres::NoTls,
    )
    .await?;
    tokio::spawn(connection);
    Ok(client)
}

pub fn sqlstate(result: Result<impl Sized, tokio_postgres::Error>) -> String {
    match result {
        Ok(_) => "succeeded".into(),
        Err(e) => e.code().map_or_else(|| e.to_string(), |c| c.code().to_owned()),
    }
}
