//! A PostgreSQL server (cluster) that holds tenants, as the control plane reaches it.
//!
//! Its databases, each with one purpose:
//! - the **admin URL's database** (the catalog's, for the `default` cluster): only used to
//!   create the two below;
//! - the **control database** (`<prefix>_control`): where the control plane takes its locks
//!   (role DDL, the template, each tenant's migrations) and runs role and database DDL. No
//!   tenant role may connect to it, so no tenant can hold, or wait on, any of those locks;
//! - the **tenants database** (`<prefix>_tenants`): one schema per schema-isolated tenant,
//!   owned by the owner role; the endpoint their credentials name;
//! - the **template database** (`<prefix>_template`) tenants with their own database are
//!   cloned from, and those databases.
//!
//! In the databases tenants connect to, `PUBLIC` may neither create in `public` nor use the
//! procedural languages (no `DO` blocks, no functions a tenant writes).

mod template_history;

pub(crate) use template_history::TemplateHistory;

use deadpool_postgres::{Pool, RecyclingMethod};
use tenancy::domain::RoleName;
use tenancy::pg::PgConfig;
use tokio::sync::OnceCell;

/// Where tenants connect: the values written into their secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) dbname: String,
    /// The `sslmode` of the cluster's admin connection, which tenants' connections use too.
    pub(crate) sslmode: tenancy::pg::SslMode,
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cluster {cluster}: {message}")]
    Connect { cluster: String, message: String },
    #[error("cluster {cluster}: preparing it for tenants failed: {message}")]
    Prepare { cluster: String, message: String },
    #[error("no cluster {0} is registered")]
    Unknown(String),
    #[error("cluster {cluster}: {message}")]
    Database { cluster: String, message: String },
}

impl tenancy::error::OperationError for ClusterError {
    fn kind(&self) -> tenancy::error::ErrorKind {
        use tenancy::error::ErrorKind;
        match self {
            Self::Connect { .. } => ErrorKind::Unavailable,
            Self::Prepare { .. } | Self::Database { .. } => ErrorKind::Failed,
            Self::Unknown(_) => ErrorKind::NotFound,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::Connect { .. } => "cluster_unavailable",
            Self::Prepare { .. } | Self::Database { .. } => "cluster_failed",
            Self::Unknown(_) => "unknown_cluster",
        }
    }
}

/// Advisory lock key that serialises work on a cluster's template database (migrating it,
/// cloning it): PostgreSQL refuses to clone a database others are connected to.
pub const TEMPLATE_LOCK: i64 = 0x7465_6e61_6e63_7903;

/// An admin connection: pooled (the tenants database, the control database), or a dedicated
/// one (a tenant's own database).
pub(crate) enum AdminSession {
    Shared(deadpool_postgres::Object),
    Own(tokio_postgres::Client),
}

impl std::ops::Deref for AdminSession {
    type Target = tokio_postgres::Client;
    fn deref(&self) -> &Self::Target {
        match self {
            Self::Shared(object) => object,
            Self::Own(client) => client,
        }
    }
}

impl std::ops::DerefMut for AdminSession {
    fn deref_mut(&mut self) -> &mut Self::Target {
        match self {
            Self::Shared(object) => object,
            Self::Own(client) => client,
        }
    }
}

/// The connection settings of a cluster's admin credentials.
pub(crate) fn admin_config(
    admin: &tenancy::secrets::DbCredentials,
    bundle: &tenancy::pg::CaBundle,
) -> PgConfig {
    let mut config = admin.config(bundle);
    config.application_name("tenantctl");
    config
}

/// Advisory lock key that serialises DDL on shared objects (roles, the database's ACL) of a
/// cluster between workers and replicas; taken on the control database.
pub const CLUSTER_DDL_LOCK: i64 = 7_365_827_345;

/// What tenants may not do in a database they connect to: create objects in `public`, use
/// a procedural language (a `DO` block, a function of their own), or create large objects
/// (which live outside every schema, and which no privilege would keep a tenant's read-only
/// role from creating, even in a read-only transaction). The owner role, which runs
/// migrations, keeps PL/pgSQL.
fn lock_down_sql(owner: &RoleName) -> String {
    let owner = owner.quoted();
    format!(
        "REVOKE CREATE ON SCHEMA public FROM PUBLIC;
         REVOKE USAGE ON LANGUAGE plpgsql FROM PUBLIC;
         GRANT USAGE ON LANGUAGE plpgsql TO {owner};
         REVOKE EXECUTE ON FUNCTION pg_catalog.lo_create(oid), pg_catalog.lo_creat(integer),
           pg_catalog.lo_from_bytea(oid, bytea) FROM PUBLIC;"
    )
}

/// The comment that marks the owner role as ours, so an existing role of the same name that is
/// someone else's is never adopted.
const OWNER_MARKER: &str = "tenancy owner role";
/// The comment on the tenants' group role (see [`OWNER_MARKER`]).
const GROUP_MARKER: &str = "tenancy tenants group role";

/// A `DO` block that creates the NOLOGIN role `role` with the comment `marker`, or fails when a
/// role of that name exists without it (someone else's role is never adopted).
pub(crate) fn ensure_marked_role(role: &RoleName, marker: &str) -> String {
    let (quoted, literal) = (role.quoted(), role.as_str());
    format!(
        "DO $$ BEGIN
           IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{literal}') THEN
             CREATE ROLE {quoted} NOLOGIN;
             COMMENT ON ROLE {quoted} IS '{marker}';
           ELSIF shobj_description((SELECT oid FROM pg_roles WHERE rolname = '{literal}'), 'pg_authid')
                 IS DISTINCT FROM '{marker}' THEN
             RAISE EXCEPTION 'role {literal} exists but was not created by tenancy; choose another TENANT_ROLE_PREFIX';
           END IF;
         END $$;"
    )
}

/// Connections that run DDL for one tenant after another are closed after this many uses. A
/// backend that has touched thousands of schemas keeps all their catalog entries cached
/// (hundreds of megabytes) and works through every catalog change of the others against them,
/// so provisioning would slow down as the fleet grows.
const DDL_CONNECTION_USES: usize = 200;

/// A pool whose connections are retired after [`DDL_CONNECTION_USES`] uses.
fn ddl_pool(config: &PgConfig, max_size: usize, recycling: RecyclingMethod) -> Result<Pool, String> {
    let retire = deadpool_postgres::Hook::sync_fn(|_, metrics| {
        if metrics.recycle_count >= DDL_CONNECTION_USES {
            Err(deadpool_postgres::HookError::Message("retired: catalog caches of too many schemas".into()))
        } else {
            Ok(())
        }
    });
    tenancy::pg::pool_with(config, max_size, recycling).pre_recycle(retire).build().map_err(|e| e.to_string())
}

pub(crate) struct Cluster {
    pub(crate) name: String,
    /// Admin connections to the control database: role and database DDL.
    admin: Pool,
    /// Admin connections to the tenants database: schemas, grants, migrations.
    migrator: Pool,
    /// Connections to the control database that hold tenants' migration locks: every
    /// checkout starts with none held.
    locks: Pool,
    /// Where tenants connect: the tenants database.
    pub(crate) endpoint: Endpoint,
    pub(crate) owner: RoleName,
    /// The group role holding `CONNECT` on the shared database for schema tenants' roles.
    pub(crate) tenants_group: RoleName,
    /// The template database tenant databases are cloned from.
    pub(crate) template: tenancy::domain::DatabaseName,
    /// The database of the control plane's locks, which no tenant may connect to.
    pub(crate) control: tenancy::domain::DatabaseName,
    /// The database of schema-isolated tenants (the endpoint's).
    pub(crate) tenants: tenancy::domain::DatabaseName,
    /// The admin connection settings as given (for tools such as `pg_dump`; holds a password).
    admin_config: PgConfig,
    prepared: OnceCell<()>,
}

impl Cluster {
    /// The cluster behind `config` (an admin connection), whose tenants are owned by the
    /// `<role_prefix>_owner` role.
    pub(crate) fn new(name: &str, config: &PgConfig, role_prefix: &str) -> Result<Self, ClusterError> {
        let connect = |message: String| ClusterError::Connect { cluster: name.to_owned(), message };
        let control = tenancy::domain::DatabaseName::control(role_prefix);
        let tenants = tenancy::domain::DatabaseName::shared_tenants(role_prefix);
        let in_database = |database: &tenancy::domain::DatabaseName| {
            let mut config = config.clone();
            config.dbname(database.as_str());
            config
        };
        let admin = ddl_pool(&in_database(&control), 8, RecyclingMethod::Fast).map_err(connect)?;
        // Migrations change role and search_path on their session; `Clean` recycling resets
        // both before a connection is reused.
        let migrator = ddl_pool(&in_database(&tenants), 16, RecyclingMethod::Clean).map_err(connect)?;
        // One per fleet worker at most (and a few for provisioning); a lock a cancelled task
        // left behind is released when the connection is next checked out.
        let unlock_all = RecyclingMethod::Custom("SELECT pg_advisory_unlock_all()".into());
        let locks = ddl_pool(&in_database(&control), 264, unlock_all).map_err(connect)?;
        let host = match config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
            _ => "localhost".to_owned(),
        };
        let endpoint = Endpoint {
            host,
            port: config.get_ports().first().copied().unwrap_or(5432),
            dbname: tenants.to_string(),
            sslmode: config.sslmode(),
        };
        Ok(Self {
            name: name.to_owned(),
            admin,
            migrator,
            locks,
            endpoint,
            owner: RoleName::owner(role_prefix),
            tenants_group: RoleName::tenants_group(role_prefix),
            template: tenancy::domain::DatabaseName::template(role_prefix),
            control,
            tenants,
            admin_config: config.clone(),
            prepared: OnceCell::new(),
        })
    }

    /// An admin connection to the control database, after making sure the cluster is
    /// prepared for tenants.
    pub(crate) async fn admin(&self) -> Result<deadpool_postgres::Object, ClusterError> {
        self.prepared.get_or_try_init(|| self.prepare()).await?;
        self.admin.get().await.map_err(|e| self.connect_error(&e))
    }

    /// An admin connection to the tenants database (role and search_path are reset when it
    /// returns to the pool).
    pub(crate) async fn migrator(&self) -> Result<deadpool_postgres::Object, ClusterError> {
        self.prepared.get_or_try_init(|| self.prepare()).await?;
        self.migrator.get().await.map_err(|e| self.connect_error(&e))
    }

    /// A connection to the control database for tenants' migration locks, holding none.
    pub(crate) async fn lock_session(&self) -> Result<deadpool_postgres::Object, ClusterError> {
        self.prepared.get_or_try_init(|| self.prepare()).await?;
        self.locks.get().await.map_err(|e| self.connect_error(&e))
    }

    /// The migrator connection for a tenant: the shared database's pool, or a dedicated
    /// connection to the tenant's own database.
    pub(crate) async fn migrator_for(
        &self,
        database: Option<&tenancy::domain::DatabaseName>,
    ) -> Result<AdminSession, ClusterError> {
        match database {
            None => Ok(AdminSession::Shared(self.migrator().await?)),
            Some(database) => Ok(AdminSession::Own(self.connect(database.as_str()).await?.0)),
        }
    }

    /// A migrator session of its own (not pooled) to the shared database or a tenant's own
    /// database; closed when dropped. A fleet run's worker migrates many tenants on one.
    pub(crate) async fn migrator_session(
        &self,
        database: Option<&tenancy::domain::DatabaseName>,
    ) -> Result<tokio_postgres::Client, ClusterError> {
        let dbname = database.map_or(self.endpoint.dbname.as_str(), |db| db.as_str());
        Ok(self.connect(dbname).await?.0)
    }

    /// A libpq connection string to database `dbname` with the admin credentials, for another
    /// server to connect here (a move's subscription). It holds a password: never logged, and
    /// kept by PostgreSQL where only superusers read it (`pg_subscription.subconninfo`). A
    /// `verify-*` mode becomes `require`: the other server need not hold our CA bundle.
    pub(crate) fn conninfo(&self, dbname: &str) -> String {
        use tenancy::pg::SslMode;
        let quote = |value: &str| format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"));
        let host = match self.admin_config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
            #[cfg(unix)]
            Some(tokio_postgres::config::Host::Unix(path)) => path.display().to_string(),
            None => "localhost".to_owned(),
        };
        let port = self.admin_config.get_ports().first().copied().unwrap_or(5432);
        let user = self.admin_config.get_user().unwrap_or("postgres");
        let sslmode = match self.admin_config.sslmode() {
            SslMode::VerifyCa | SslMode::VerifyFull => SslMode::Require,
            other => other,
        };
        let mut conninfo = format!(
            "host={} port={port} dbname={} user={} sslmode={} application_name={}",
            quote(&host),
            quote(dbname),
            quote(user),
            sslmode.as_str(),
            quote("tenancy-move"),
        );
        if let Some(password) = self.admin_config.get_password() {
            conninfo.push_str(&format!(" password={}", quote(&String::from_utf8_lossy(password))));
        }
        conninfo
    }

    fn database_error(&self, err: &tokio_postgres::Error) -> ClusterError {
        ClusterError::Database { cluster: self.name.clone(), message: tenancy::pg::describe_error(err) }
    }

    /// A new admin connection to database `dbname` of a prepared cluster, and the task that
    /// drives it (it ends once the client is dropped and the connection closed).
    async fn connect(
        &self,
        dbname: &str,
    ) -> Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>), ClusterError> {
        self.prepared.get_or_try_init(|| self.prepare()).await?;
        self.open(dbname).await
    }

    /// [`Cluster::connect`] without preparing the cluster first.
    async fn open(
        &self,
        dbname: &str,
    ) -> Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>), ClusterError> {
        let mut config = self.admin_config.clone();
        config.dbname(dbname);
        let (client, connection) = config.connect().await.map_err(|e| ClusterError::Connect {
            cluster: self.name.clone(),
            message: tenancy::pg::describe_error(&e),
        })?;
        let task = tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok((client, task))
    }

    /// A dedicated session holding the template lock: released when the session ends, so a
    /// cancelled task cannot leave it held, and no pooled connection waits on it.
    async fn lock_template(
        &self,
    ) -> Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>), ClusterError> {
        let (client, task) = self.connect(self.control.as_str()).await?;
        client
            .execute("SELECT pg_advisory_lock($1)", &[&TEMPLATE_LOCK])
            .await
            .map_err(|e| self.database_error(&e))?;
        Ok((client, task))
    }

    /// Fails unless `database` is missing (`false`) or ours, owned by the owner role (`true`):
    /// never adopt, grant on or drop someone else's database.
    async fn ensure_ours(
        &self,
        admin: &tokio_postgres::Client,
        database: &tenancy::domain::DatabaseName,
    ) -> Result<bool, ClusterError> {
        let owner: Option<String> = admin
            .query_opt(
                "SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = $1",
                &[&database.as_str()],
            )
            .await
            .map_err(|e| self.database_error(&e))?
            .map(|r| r.get(0));
        match owner {
            None => Ok(false),
            Some(owner) if owner == self.owner.as_str() => Ok(true),
            Some(owner) => Err(ClusterError::Database {
                cluster: self.name.clone(),
                message: format!("database {database} exists and is owned by {owner}, not by {}", self.owner),
            }),
        }
    }

    /// Creates `database` as a clone of the template database, after bringing the template to
    /// the current migrations (nothing to clone if it exists and is ours). Every time, `PUBLIC`
    /// loses the right to connect, so a crash between creating and revoking leaves no gap.
    pub(crate) async fn create_tenant_database(
        &self,
        database: &tenancy::domain::DatabaseName,
        migrations: &crate::tenant_migrations::TenantMigrations,
    ) -> Result<(), ClusterError> {
        let (admin, task) = self.lock_template().await?;
        let result = async {
            if !self.ensure_ours(&admin, database).await? {
                self.migrate_template(&admin, migrations, true).await?;
                admin
                    .batch_execute(&format!(
                        "CREATE DATABASE {} WITH TEMPLATE {} OWNER {}",
                        database.quoted(),
                        self.template.quoted(),
                        self.owner.quoted()
                    ))
                    .await
                    .map_err(|e| self.database_error(&e))?;
            }
            admin
                .batch_execute(&format!("REVOKE ALL ON DATABASE {} FROM PUBLIC", database.quoted()))
                .await
                .map_err(|e| self.database_error(&e))
        }
        .await;
        drop(admin);
        let _ = task.await;
        result
    }

    /// Brings the template database to the current migrations (creating it first when
    /// `create`); returns whether there is a template. Call under [`TEMPLATE_LOCK`].
    async fn migrate_template(
        &self,
        admin: &tokio_postgres::Client,
        migrations: &crate::tenant_migrations::TenantMigrations,
        create: bool,
    ) -> Result<bool, ClusterError> {
        let template = &self.template;
        if !self.ensure_ours(admin, template).await? {
            if !create {
                return Ok(false);
            }
            admin
                .batch_execute(&format!(
                    "CREATE DATABASE {} OWNER {}",
                    template.quoted(),
                    self.owner.quoted()
                ))
                .await
                .map_err(|e| self.database_error(&e))?;
        }
        admin
            .batch_execute(&format!("REVOKE ALL ON DATABASE {} FROM PUBLIC", template.quoted()))
            .await
            .map_err(|e| self.database_error(&e))?;
        let schema = tenancy::domain::SchemaName::database_tenant();
        let (mut client, task) = self.connect(template.as_str()).await?;
        client
            .batch_execute(&format!(
                "{lock_down}
                 CREATE SCHEMA IF NOT EXISTS {schema} AUTHORIZATION {owner};
                 REVOKE ALL ON SCHEMA {schema} FROM PUBLIC;",
                lock_down = lock_down_sql(&self.owner),
                schema = schema.quoted(),
                owner = self.owner.quoted()
            ))
            .await
            .map_err(|e| self.database_error(&e))?;
        // Under the template's lock: no other migration of this schema runs.
        let migrated = crate::tenant_migrations::migrate_schema(
            &mut client,
            None,
            migrations,
            &schema,
            &self.owner,
            None,
            Default::default(),
        )
        .await;
        // Cloning needs the template to itself: close this session before anyone clones.
        drop(client);
        let _ = task.await;
        migrated
            .map_err(|e| ClusterError::Database { cluster: self.name.clone(), message: e.to_string() })?;
        Ok(true)
    }

    /// Brings the template database, if this cluster has one, to the current migrations (fleet
    /// runs do this first, so tenants created during a run land at the target version).
    pub(crate) async fn migrate_template_if_present(
        &self,
        migrations: &crate::tenant_migrations::TenantMigrations,
    ) -> Result<bool, ClusterError> {
        let (admin, task) = self.lock_template().await?;
        let result = self.migrate_template(&admin, migrations, false).await;
        drop(admin);
        let _ = task.await;
        result
    }

    /// Drops a tenant's database, ending its sessions.
    pub(crate) async fn drop_database(
        &self,
        database: &tenancy::domain::DatabaseName,
    ) -> Result<(), ClusterError> {
        let admin = self.admin().await?;
        if !self.ensure_ours(&admin, database).await? {
            return Ok(());
        }
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", database.quoted()))
            .await
            .map_err(|e| self.database_error(&e))
    }

    /// `program` (a libpq tool: `pg_dump`, `pg_restore`) set to reach database `dbname` here
    /// with the admin credentials, given through the environment so the password never
    /// appears in a process list. Nothing else of this process's environment is passed on (a
    /// stray `PGSERVICE` or `PGHOSTADDR` would send it elsewhere) but `PATH`.
    pub(crate) fn libpq_command(&self, program: &std::path::Path, dbname: &str) -> tokio::process::Command {
        let config = &self.admin_config;
        let mut command = tokio::process::Command::new(program);
        command.env_clear();
        if let Some(path) = std::env::var_os("PATH") {
            command.env("PATH", path);
        }
        command
            .env("PGHOST", &self.endpoint.host)
            .env("PGPORT", self.endpoint.port.to_string())
            .env("PGDATABASE", dbname)
            .env("PGUSER", config.get_user().unwrap_or("postgres"))
            .env("PGPASSWORD", String::from_utf8_lossy(config.get_password().unwrap_or_default()).as_ref())
            .env("PGSSLMODE", config.sslmode().as_str())
            .stdin(std::process::Stdio::null());
        if let Some(bundle) = config.ca_bundle().path() {
            command.env("PGSSLROOTCERT", bundle);
        }
        command
    }

    /// Runs `pg_dump` of a tenant (its schema, or its whole database) into `file` (custom
    /// format).
    pub(crate) async fn dump_tenant(
        &self,
        pg_dump: &std::path::Path,
        tenant: &tenancy::catalog::TenantRecord,
        file: &std::path::Path,
    ) -> Result<(), String> {
        let database = match &tenant.database_name {
            // Its own database: all of it.
            Some(database) => database.as_str(),
            // A schema of the shared database: that schema only.
            None => &self.endpoint.dbname,
        };
        let mut command = self.libpq_command(pg_dump, database);
        command.arg("--format=custom").arg("--no-owner").arg(format!("--file={}", file.display()));
        if tenant.database_name.is_none() {
            command.arg(format!("--schema={}", tenant.schema_name.quoted()));
        }
        let output = command.output().await.map_err(|e| format!("cannot run {}: {e}", pg_dump.display()))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!("pg_dump failed: {}", String::from_utf8_lossy(&output.stderr).trim()))
        }
    }

    fn connect_error(&self, err: &deadpool_postgres::PoolError) -> ClusterError {
        let message = match err {
            deadpool_postgres::PoolError::Backend(pg) => tenancy::pg::describe_error(pg),
            other => other.to_string(),
        };
        ClusterError::Connect { cluster: self.name.clone(), message }
    }

    /// Once per process: the control database exists and `PUBLIC` may not connect to it; the
    /// owner role and the tenants' group role exist (ours, never adopted) and we may act as
    /// the owner; the tenants database exists, owned by the owner, and only the group may
    /// connect to it (schema tenants' roles are its members); inside it, tenants may neither
    /// create in `public` nor use a procedural language.
    async fn prepare(&self) -> Result<(), ClusterError> {
        let failed = |e: &tokio_postgres::Error| ClusterError::Prepare {
            cluster: self.name.clone(),
            message: tenancy::pg::describe_error(e),
        };
        // Control planes starting at once prepare one at a time: concurrent grants on one
        // object fail in PostgreSQL ("tuple concurrently updated"). The lock is the bootstrap
        // session's, in the admin URL's database (the only one sure to exist), held to the end.
        let (bootstrap, task) = self.open(self.admin_config.get_dbname().unwrap_or("postgres")).await?;
        bootstrap
            .execute("SELECT pg_advisory_lock($1)", &[&CLUSTER_DDL_LOCK])
            .await
            .map_err(|e| failed(&e))?;
        let prepared = self.prepare_locked(&bootstrap).await;
        drop(bootstrap);
        let _ = task.await;
        prepared
    }

    /// [`Cluster::prepare`], under its lock.
    async fn prepare_locked(&self, bootstrap: &tokio_postgres::Client) -> Result<(), ClusterError> {
        let failed = |e: &tokio_postgres::Error| ClusterError::Prepare {
            cluster: self.name.clone(),
            message: tenancy::pg::describe_error(e),
        };
        let control = self.control.quoted();
        create_database(bootstrap, &format!("CREATE DATABASE {control}")).await.map_err(|e| failed(&e))?;
        bootstrap
            .batch_execute(&format!("REVOKE ALL ON DATABASE {control} FROM PUBLIC"))
            .await
            .map_err(|e| failed(&e))?;

        let admin = self.admin.get().await.map_err(|e| self.connect_error(&e))?;
        let (owner, group) = (self.owner.quoted(), self.tenants_group.quoted());
        let ensure_owner = ensure_marked_role(&self.owner, OWNER_MARKER);
        let ensure_group = ensure_marked_role(&self.tenants_group, GROUP_MARKER);
        admin
            .batch_execute(&format!(
                "BEGIN;
                 SELECT pg_advisory_xact_lock({CLUSTER_DDL_LOCK});
                 {ensure_owner}
                 {ensure_group}
                 GRANT {owner} TO CURRENT_USER;
                 COMMIT;"
            ))
            .await
            .map_err(|e| failed(&e))?;
        let tenants = &self.tenants;
        if !self.ensure_ours(&admin, tenants).await? {
            create_database(&admin, &format!("CREATE DATABASE {} OWNER {owner}", tenants.quoted()))
                .await
                .map_err(|e| failed(&e))?;
            // Someone else's database of that name (created meanwhile) is never adopted.
            self.ensure_ours(&admin, tenants).await?;
        }
        admin
            .batch_execute(&format!(
                "REVOKE ALL ON DATABASE {db} FROM PUBLIC; GRANT CONNECT ON DATABASE {db} TO {group};",
                db = tenants.quoted()
            ))
            .await
            .map_err(|e| failed(&e))?;
        drop(admin);
        let tenants_db = self.migrator.get().await.map_err(|e| self.connect_error(&e))?;
        tenants_db.batch_execute(&lock_down_sql(&self.owner)).await.map_err(|e| failed(&e))
    }
}

/// Runs `create` (a `CREATE DATABASE`), which may race another control plane's: a database
/// that exists already is not an error (whose it is, the caller checks).
async fn create_database(client: &tokio_postgres::Client, create: &str) -> Result<(), tokio_postgres::Error> {
    match client.batch_execute(create).await {
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE) => Ok(()),
        other => other,
    }
}
