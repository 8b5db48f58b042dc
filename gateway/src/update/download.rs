//! Fetching a bundle from an http(s) URL: the response body is handed on as a stream of
//! chunks (into the store), never collected.

use bytes::Bytes;
use futures_util::Stream;
use std::time::Duration;

/// Checks `url` and starts the request; returns the announced length and the body.
pub(super) async fn open(
    url: &str,
    idle: Duration,
    total: Duration,
) -> Result<
    (
        Option<u64>,
        impl Stream<Item = Result<Bytes, reqwest::Error>>,
    ),
    String,
> {
    let parsed = reqwest::Url::parse(url.trim()).map_err(|e| format!("bad URL {url:?}: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(format!(
            "bad URL {url:?}: only http:// and https:// URLs are fetched"
        ));
    }
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(15))
        .read_timeout(idle)
        .timeout(total)
        .user_agent(concat!("gatehouse/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot make an HTTP client: {e}"))?;
    let resp = client
        .get(parsed.clone())
        .send()
        .await
        .map_err(|e| format!("download of {parsed} failed: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!(
            "download of {parsed} failed: HTTP {}",
            resp.status()
        ));
    }
    Ok((resp.content_length(), resp.bytes_stream()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_http_urls_are_fetched() {
        let t = Duration::from_secs(1);
        for bad in [
            "ftp://example.com/x.raucb",
            "file:///etc/shadow",
            "not a url",
            "http://",
        ] {
            let e = open(bad, t, t).await.err().expect(bad);
            assert!(e.starts_with("bad URL"), "{bad}: {e}");
        }
    }
}
