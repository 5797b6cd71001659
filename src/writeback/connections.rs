//! One write-back worker per configured CRM connection, built from the config.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use anyhow::Context;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tsunagi_salesforce::{rest::RestClient, Grant, RefreshTokenKeeper, TokenSource};

use super::{
    dry_run::{CallPlan, DryRunSink},
    kintone::{KintoneFields, KintoneSink},
    refresh_tokens::StoredRefreshTokens,
    salesforce::{MessageLog, SalesforceSink, StatusFields},
    warnings::SetupWarnings,
    Sink, Timing, Worker,
};
use crate::{
    clock::Clock,
    config::{AuthKind, Config, KintoneConfig, SalesforceConfig, Secret},
    store::Store,
};

/// How often a Salesforce connection's setup is checked again while it has problems.
const SETUP_RECHECK: Duration = Duration::from_secs(10 * 60);
/// The same for a kintone app, whose form read counts against its 10,000 requests a day: an
/// hour apart, 24 a day while the admin has not fixed it.
const KINTONE_SETUP_RECHECK: Duration = Duration::from_secs(60 * 60);

/// Start a worker for every CRM connection in `config`, until `shutdown`; `server_secret` seals
/// the refresh tokens Salesforce rotates, and each Salesforce connection's setup check reports
/// to `warnings`.
pub async fn start(
    config: &Config,
    store: &Arc<dyn Store>,
    clock: &Arc<dyn Clock>,
    server_secret: &str,
    warnings: &SetupWarnings,
    shutdown: &CancellationToken,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let mut checks = Vec::new();
    let timing = Timing {
        interval: Duration::from_millis(config.writeback.interval_ms),
        settle: Duration::from_millis(config.writeback.settle_ms),
        max_pause: Duration::from_millis(config.writeback.max_pause_ms),
        fill_wait: Duration::from_millis(config.writeback.fill_wait_ms),
        ..Timing::default()
    };
    let mut sinks: Vec<(String, Arc<dyn Sink>, u32)> = Vec::new();
    // A dry run logs the calls the same sink would make instead of making them.
    let dry = |name: &String, plan: Box<dyn CallPlan>| -> Arc<dyn Sink> {
        Arc::new(DryRunSink::new(name, plan, store.clone(), clock.clone()))
    };
    for connection in &config.salesforce {
        let name = format!("salesforce:{}", connection.name);
        let keeper = |configured: &str| {
            StoredRefreshTokens::new(
                store.clone(),
                clock.clone(),
                &name,
                server_secret,
                configured,
            )
        };
        let sink = salesforce_sink(connection, &name, keeper)
            .await
            .with_context(|| format!("salesforce connection {:?}", connection.name))?;
        let sink: Arc<dyn Sink> = match connection.dry_run {
            true => dry(&name, Box::new(sink)),
            false => {
                let sink = Arc::new(sink);
                let check =
                    check_setup(sink.clone(), SETUP_RECHECK, name.clone(), warnings.clone());
                let stop = shutdown.clone();
                checks.push(tokio::spawn(async move {
                    stop.run_until_cancelled_owned(check).await;
                }));
                sink
            }
        };
        sinks.push((name, sink, connection.writeback_calls_per_minute));
    }
    for connection in &config.kintone {
        let name = format!("kintone:{}", connection.name);
        let sink = kintone_sink(connection, &name, store)
            .with_context(|| format!("kintone connection {:?}", connection.name))?
            .with_warnings(warnings.clone());
        let sink: Arc<dyn Sink> = match connection.dry_run {
            true => dry(&name, Box::new(sink)),
            false => {
                let sink = Arc::new(sink);
                let check = check_setup(
                    sink.clone(),
                    KINTONE_SETUP_RECHECK,
                    name.clone(),
                    warnings.clone(),
                );
                let stop = shutdown.clone();
                checks.push(tokio::spawn(async move {
                    stop.run_until_cancelled_owned(check).await;
                }));
                sink
            }
        };
        sinks.push((name, sink, connection.writeback_calls_per_minute));
    }
    let workers = sinks.into_iter().map(|(name, sink, per_minute)| {
        let worker = Worker::new(store.clone(), sink, name, timing, clock.clone())
            .with_calls_per_minute(per_minute);
        tokio::spawn(worker.run(shutdown.clone()))
    });
    Ok(workers.chain(checks).collect())
}

/// A sink whose CRM setup can be checked against the org or app it writes to.
#[async_trait::async_trait]
trait SetupCheck: Send + Sync + 'static {
    /// What is wrong, each naming its field; empty when nothing is.
    async fn problems(&self) -> Vec<String>;
}

#[async_trait::async_trait]
impl SetupCheck for SalesforceSink {
    async fn problems(&self) -> Vec<String> {
        self.setup_problems().await
    }
}

#[async_trait::async_trait]
impl SetupCheck for KintoneSink {
    async fn problems(&self) -> Vec<String> {
        self.setup_problems().await
    }
}

/// Check a CRM connection's setup against its org or app at start, and again every `recheck`
/// until nothing is wrong, so `/readyz` clears once the admin fixed it.
async fn check_setup(
    sink: Arc<dyn SetupCheck>,
    recheck: Duration,
    connection: String,
    warnings: SetupWarnings,
) {
    loop {
        let problems = sink.problems().await;
        for problem in &problems {
            tracing::warn!(%connection, %problem, "CRM setup problem");
        }
        let fine = problems.is_empty();
        warnings.set(&connection, problems);
        if fine {
            return;
        }
        tokio::time::sleep(recheck).await;
    }
}

/// A REST client for a `[[kintone]]` connection's app: its API token, guest space, the
/// domain's Basic authentication and client certificate.
pub fn kintone_client(c: &KintoneConfig) -> anyhow::Result<tsunagi_kintone::Client> {
    let auth = tsunagi_kintone::Auth::api_token(c.api_token.expose().to_string());
    let mut http = reqwest::Client::builder();
    if let Some(path) = &c.client_certificate {
        let bytes = std::fs::read(path).with_context(|| {
            format!(
                "kintone connection {}: client_certificate {path:?} cannot be read",
                c.name
            )
        })?;
        let password = c.client_certificate_password.as_ref().map(Secret::expose);
        let identity = tsunagi_kintone::client_identity(&bytes, password).with_context(|| {
            format!("kintone connection {}: client_certificate {path:?}", c.name)
        })?;
        http = http.identity(identity);
    }
    let mut client = tsunagi_kintone::Client::with_client(http.build()?, &c.base_url, auth)?;
    if let Some(space) = c.guest_space_id {
        client = client.with_guest_space(space);
    }
    if let (Some(user), Some(password)) = (&c.basic_auth_user, &c.basic_auth_password) {
        client = client.with_basic_auth(user, password.expose())?;
    }
    Ok(client)
}

/// The sink of one `[[kintone]]` connection: its API token and the fields it writes.
fn kintone_sink(
    c: &KintoneConfig,
    name: &str,
    store: &Arc<dyn Store>,
) -> anyhow::Result<KintoneSink> {
    let client = kintone_client(c)?.with_call_hook(crate::telemetry::kintone_calls(name));
    let fields = KintoneFields {
        status: c.status_field.clone(),
        detail: c.status_detail_field.clone(),
        reply: c.reply_field.clone(),
        opt_out: c.opt_out_field.clone(),
        click: c.click_field.clone(),
        trigger: c.trigger_field.clone(),
        status_values: c.status_values.clone(),
        opt_out_option: c.opt_out_option.clone(),
        action_on_delivered: c.action_on_delivered.clone(),
    };
    Ok(KintoneSink::new(name, client, c.app, fields, store.clone()))
}

/// The sink of one `[[salesforce]]` connection: its OAuth grant, REST version and the fields
/// each mapping writes. A refresh-token grant signs in with the token `keeper` kept since the
/// config's was rotated.
async fn salesforce_sink(
    c: &SalesforceConfig,
    name: &str,
    keeper: impl FnOnce(&str) -> StoredRefreshTokens,
) -> anyhow::Result<SalesforceSink> {
    let mut keeper_in_use = None;
    let secret = |s: &Option<Secret>| s.as_ref().map(|s| s.expose().to_string());
    let grant = match c.auth {
        AuthKind::ClientCredentials => Grant::client_credentials(
            c.client_id.clone(),
            secret(&c.client_secret).context("client_secret is missing")?,
        ),
        AuthKind::JwtBearer => {
            let path = c
                .private_key_path
                .as_deref()
                .context("private_key_path is missing")?;
            let pem = std::fs::read(path).with_context(|| format!("reading {path}"))?;
            Grant::jwt_bearer(
                c.client_id.clone(),
                c.username.clone().context("username is missing")?,
                &pem,
            )
            .with_context(|| format!("{path} holds no RSA private key"))?
            .with_audience(c.jwt_audience())
        }
        AuthKind::RefreshToken => {
            let configured = c
                .refresh_token
                .as_ref()
                .context("refresh_token is missing")?;
            let kept = Arc::new(keeper(configured.expose()));
            let current = match kept.kept().await {
                Some(token) => token,
                None => configured.expose().into(),
            };
            keeper_in_use = Some(kept);
            Grant::refresh_token(
                c.client_id.clone(),
                secret(&c.client_secret).map(Into::into),
                current,
            )
        }
    };
    let mut tokens = TokenSource::new(&c.login_url, grant);
    if let Some(keeper) = keeper_in_use {
        tokens = tokens.with_keeper(keeper);
    }
    let tokens = Arc::new(tokens);
    let client = RestClient::new(tokens).with_api_version(&c.api_version)?;
    let fields: BTreeMap<String, StatusFields> = c
        .mappings
        .iter()
        .map(|m| {
            let fields = StatusFields {
                phone: m.phone_field.clone(),
                status_values: m.status_values.clone(),
                status: m.status_field.clone(),
                detail: m.status_detail_field.clone(),
                reply: m.reply_field.clone(),
                opt_out: m.opt_out_field.clone(),
                click: m.click_field.clone(),
            };
            (m.sobject.clone(), fields)
        })
        .collect();
    let logs: BTreeMap<String, MessageLog> = c
        .mappings
        .iter()
        .filter_map(|m| {
            let log = m.message_log.as_ref()?;
            let log = MessageLog {
                object: log.object.clone(),
                external_id_field: log.external_id_field.clone(),
                record_field: log.record_field.clone(),
                status_field: log.status_field.clone(),
                detail_field: log.detail_field.clone(),
            };
            Some((m.sobject.clone(), log))
        })
        .collect();
    Ok(SalesforceSink::new(name, client, fields).with_message_logs(logs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connection(extra: &str) -> KintoneConfig {
        let text = format!(
            "[[kintone]]\nname = \"sales\"\nbase_url = \"https://example.s.cybozu.com\"\napp = 12\n\
             api_token = \"t\"\ninbound_token = \"0123456789abcdef\"\nphone_field = \"p\"\n\
             template = \"x\"\nstatus_field = \"s\"\nstatus_detail_field = \"d\"\n\
             reply_field = \"r\"\n{extra}"
        );
        Config::parse(&text, |_| None).unwrap().kintone.remove(0)
    }

    #[test]
    fn a_client_certificate_that_cannot_be_read_or_is_none_stops_the_start_naming_the_key() {
        let missing = connection("client_certificate = \"/nonexistent/kintone.p12\"\n");
        let e = format!("{:#}", kintone_client(&missing).unwrap_err());
        assert!(
            e.contains("client_certificate") && e.contains("cannot be read"),
            "{e}"
        );
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("kintone.p12");
        std::fs::write(&junk, b"not a certificate").unwrap();
        let bad = connection(&format!(
            "client_certificate = \"{}\"\nclient_certificate_password = \"pw\"\n",
            junk.display()
        ));
        let e = format!("{:#}", kintone_client(&bad).unwrap_err());
        assert!(e.contains("neither PEM nor a PKCS#12"), "{e}");
        let guest = connection(
            "guest_space_id = 5\nbasic_auth_user = \"u\"\nbasic_auth_password = \"p\"\n",
        );
        assert_eq!(kintone_client(&guest).unwrap().api_root(), "/k/guest/5/v1/");
    }
}
