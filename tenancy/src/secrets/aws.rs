//! AWS Secrets Manager backend.

use super::{decode_credentials, encode_credentials, DbCredentials, SecretError, SecretName, SecretStore};
use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_secretsmanager::Client;

/// Days AWS keeps a deleted tenant secret recoverable.
const RECOVERY_WINDOW_DAYS: i64 = 7;

pub struct AwsSecretStore {
    client: Client,
}

impl AwsSecretStore {
    /// Loads the standard AWS configuration (credentials chain, profile, environment), with
    /// `region` and `endpoint_url` overriding it when given.
    pub async fn new(region: Option<String>, endpoint_url: Option<String>) -> Self {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(region) = region {
            loader = loader.region(aws_config::Region::new(region));
        }
        if let Some(url) = endpoint_url {
            loader = loader.endpoint_url(url);
        }
        let config = loader.load().await;
        Self { client: Client::new(&config) }
    }

    /// A new version of an existing secret.
    async fn put_value(&self, name: &SecretName, body: &str, request_token: &str) -> Result<(), SecretError> {
        self.client
            .put_secret_value()
            .secret_id(name.as_str())
            .secret_string(body)
            .client_request_token(request_token)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| classify(&e))
    }
}

/// Turns an SDK error into ours, keeping only the error code and message (AWS messages may
/// name ARNs, so only the code reaches anything client-facing).
fn classify<E: ProvideErrorMetadata>(err: &SdkError<E>) -> SecretError {
    match err {
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or("unknown");
            match code {
                "ThrottlingException" | "InternalServiceError" | "ServiceUnavailable" => {
                    SecretError::Unavailable(code.to_owned())
                }
                _ => SecretError::Rejected(code.to_owned()),
            }
        }
        SdkError::TimeoutError(_) => SecretError::Unavailable("timeout".into()),
        SdkError::DispatchFailure(_) => SecretError::Unavailable("could not reach the endpoint".into()),
        _ => SecretError::Unavailable("unexpected response".into()),
    }
}

fn code_of<E: ProvideErrorMetadata>(err: &SdkError<E>) -> Option<&str> {
    match err {
        SdkError::ServiceError(service) => service.err().code(),
        _ => None,
    }
}

#[async_trait::async_trait]
impl SecretStore for AwsSecretStore {
    async fn put(
        &self,
        name: &SecretName,
        value: &DbCredentials,
        request_token: &str,
    ) -> Result<(), SecretError> {
        let body = encode_credentials(value);
        let created = self
            .client
            .create_secret()
            .name(name.as_str())
            .secret_string(&body)
            .client_request_token(request_token)
            .description("Tenant database credentials (managed by tenantctl)")
            .send()
            .await;
        match created {
            Ok(_) => Ok(()),
            Err(err) if code_of(&err) == Some("ResourceExistsException") => {
                self.put_value(name, &body, request_token).await
            }
            Err(err) if code_of(&err) == Some("InvalidRequestException") => {
                // A secret scheduled for deletion under the same name: bring it back first.
                self.client
                    .restore_secret()
                    .secret_id(name.as_str())
                    .send()
                    .await
                    .map_err(|e| classify(&e))?;
                self.put_value(name, &body, request_token).await
            }
            Err(err) => Err(classify(&err)),
        }
    }

    async fn get(&self, name: &SecretName) -> Result<Option<DbCredentials>, SecretError> {
        match self.client.get_secret_value().secret_id(name.as_str()).send().await {
            Ok(out) => {
                let raw = out.secret_string().unwrap_or_default();
                decode_credentials(name, raw.as_bytes()).map(Some)
            }
            Err(err)
                if matches!(code_of(&err), Some("ResourceNotFoundException" | "InvalidRequestException")) =>
            {
                Ok(None)
            }
            Err(err) => Err(classify(&err)),
        }
    }

    async fn delete(&self, name: &SecretName) -> Result<(), SecretError> {
        match self
            .client
            .delete_secret()
            .secret_id(name.as_str())
            .recovery_window_in_days(RECOVERY_WINDOW_DAYS)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(err)
                if matches!(code_of(&err), Some("ResourceNotFoundException" | "InvalidRequestException")) =>
            {
                Ok(())
            }
            Err(err) => Err(classify(&err)),
        }
    }

    fn backend(&self) -> &'static str {
        "aws"
    }
}
