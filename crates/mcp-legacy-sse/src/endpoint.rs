//! Turning the data of the server's `endpoint` event into the URL messages are posted to.

use url::{Origin, Url};

use crate::error::{SseClientError, redact, truncate};

/// How much of a refused `endpoint` event's data is kept in the error.
const MAX_DATA_IN_ERROR: usize = 200;

/// Checks that `url` can be used as the SSE URL: `http` or `https` with a host.
pub(crate) fn check_sse_url(url: &Url) -> Result<(), SseClientError> {
    let reason = if !matches!(url.scheme(), "http" | "https") {
        "the scheme must be http or https"
    } else if url.host().is_none() {
        "the URL has no host"
    } else {
        return Ok(());
    };
    Err(SseClientError::InvalidUrl {
        url: redact(url),
        reason,
    })
}

/// Resolves the data of an `endpoint` event against `base` (the URL the event stream was
/// read from) and checks that the result is on `allowed` (the configured SSE URL's origin).
///
/// The data is usually a path with a query, such as `/messages/?session_id=…`, but may be
/// an absolute URL. Surrounding whitespace is ignored and a fragment is dropped.
pub(crate) fn resolve_endpoint(
    base: &Url,
    allowed: &Origin,
    data: &str,
) -> Result<Url, SseClientError> {
    let invalid = |reason: String| SseClientError::InvalidEndpoint {
        data: truncate(data, MAX_DATA_IN_ERROR),
        reason,
    };
    let reference = data.trim();
    if reference.is_empty() {
        return Err(invalid("it is empty".to_owned()));
    }
    let mut endpoint = base.join(reference).map_err(|e| invalid(e.to_string()))?;
    endpoint.set_fragment(None);
    // An opaque origin (any scheme but http, https, ws, wss, ftp, file) equals no other
    // origin, so such endpoints are refused here too.
    if endpoint.origin() != *allowed {
        return Err(SseClientError::CrossOriginEndpoint {
            endpoint: redact(&endpoint),
            expected_origin: allowed.ascii_serialization(),
        });
    }
    Ok(endpoint)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).expect("valid test URL")
    }

    fn resolve(sse: &str, data: &str) -> Result<Url, SseClientError> {
        let sse = url(sse);
        resolve_endpoint(&sse, &sse.origin(), data)
    }

    #[test]
    fn absolute_path_replaces_the_path() {
        let endpoint = resolve("http://127.0.0.1:8000/sse", "/messages/?session_id=abc123")
            .expect("same origin");
        assert_eq!(
            endpoint.as_str(),
            "http://127.0.0.1:8000/messages/?session_id=abc123"
        );
    }

    #[test]
    fn relative_path_resolves_against_the_sse_directory() {
        let endpoint =
            resolve("https://h.example/mcp/sse", "messages?sessionId=7").expect("same origin");
        assert_eq!(
            endpoint.as_str(),
            "https://h.example/mcp/messages?sessionId=7"
        );
    }

    #[test]
    fn query_only_keeps_the_sse_path() {
        let endpoint = resolve("https://h.example/sse?x=1", "?session=9").expect("same origin");
        assert_eq!(endpoint.as_str(), "https://h.example/sse?session=9");
    }

    #[test]
    fn absolute_same_origin_url_is_accepted_with_default_port_normalised() {
        let endpoint =
            resolve("https://h.example/sse", "https://h.example:443/m?s=1\n").expect("same origin");
        assert_eq!(endpoint.as_str(), "https://h.example/m?s=1");
    }

    #[test]
    fn whitespace_and_fragment_are_dropped() {
        let endpoint = resolve("http://h.example/sse", "  /m?s=1#frag \r\n").expect("same origin");
        assert_eq!(endpoint.as_str(), "http://h.example/m?s=1");
    }

    #[test]
    fn other_host_is_refused() {
        let error =
            resolve("http://h.example/sse", "http://evil.example/m?s=1").expect_err("cross origin");
        match &error {
            SseClientError::CrossOriginEndpoint {
                endpoint,
                expected_origin,
            } => {
                assert_eq!(endpoint, "http://evil.example/m");
                assert_eq!(expected_origin, "http://h.example");
            }
            other => panic!("unexpected error {other:?}"),
        }
        assert!(error.to_string().contains("not on the SSE URL's origin"));
    }

    #[test]
    fn other_port_scheme_or_protocol_relative_host_is_refused() {
        for data in [
            "http://h.example:8080/m",
            "https://h.example/m",
            "//evil.example/m",
            "javascript:alert(1)",
            "data:text/plain,hi",
        ] {
            let result = resolve("http://h.example/sse", data);
            assert!(
                matches!(result, Err(SseClientError::CrossOriginEndpoint { .. })),
                "{data:?} gave {result:?}"
            );
        }
    }

    #[test]
    fn subdomain_is_another_origin() {
        let result = resolve("https://example.com/sse", "https://api.example.com/m");
        assert!(matches!(
            result,
            Err(SseClientError::CrossOriginEndpoint { .. })
        ));
    }

    #[test]
    fn redirected_stream_resolves_against_the_final_url_but_checks_the_configured_origin() {
        let configured = url("http://h.example/sse");
        let final_url = url("http://h.example/v2/sse/");
        let endpoint = resolve_endpoint(&final_url, &configured.origin(), "messages?s=1")
            .expect("same origin");
        assert_eq!(endpoint.as_str(), "http://h.example/v2/sse/messages?s=1");

        let elsewhere = url("http://other.example/sse");
        let result = resolve_endpoint(&elsewhere, &configured.origin(), "/m?s=1");
        assert!(matches!(
            result,
            Err(SseClientError::CrossOriginEndpoint { .. })
        ));
    }

    #[test]
    fn empty_or_unparsable_data_is_invalid() {
        for data in ["", "  \n", "http://[::1/m"] {
            let result = resolve("http://h.example/sse", data);
            assert!(
                matches!(result, Err(SseClientError::InvalidEndpoint { .. })),
                "{data:?} gave {result:?}"
            );
        }
    }

    #[test]
    fn sse_url_must_be_http_with_a_host() {
        assert!(check_sse_url(&url("http://h.example/sse")).is_ok());
        assert!(check_sse_url(&url("https://127.0.0.1:9/sse")).is_ok());
        for bad in ["ftp://h.example/sse", "file:///tmp/sse", "unix:/tmp/sock"] {
            assert!(
                matches!(
                    check_sse_url(&url(bad)),
                    Err(SseClientError::InvalidUrl { .. })
                ),
                "{bad}"
            );
        }
    }
}
