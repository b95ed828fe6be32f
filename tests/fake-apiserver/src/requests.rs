//! The request log and the request counters: what each request looked like, and how many
//! each client sent by verb and path.

use serde_json::Value;

use crate::FakeApiServer;

/// One HTTP request as the server received it.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedRequest {
    pub method: String,
    pub path: String,
    /// Decoded query parameters in order.
    pub query: Vec<(String, String)>,
    /// Media type without parameters, e.g. `application/apply-patch+yaml`.
    pub content_type: Option<String>,
    pub field_manager: Option<String>,
    pub body: Option<Value>,
    /// The `User-Agent` header: which client sent it, where clients set one.
    pub user_agent: Option<String>,
}

/// What [`FakeApiServer::request_counts`] counts by.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestKey {
    /// The `User-Agent` header, "" when absent.
    pub client: String,
    /// The API verb (get, list, watch, create, update, patch, delete, deletecollection);
    /// for discovery and unroutable paths the lower-case HTTP method.
    pub verb: String,
    /// The URL path without the query.
    pub path: String,
}

/// Requests received, by client, verb and path. Unlike [`FakeApiServer::requests`] it keeps
/// no bodies: cheap enough for load tests with thousands of clients.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestCounts(pub std::collections::BTreeMap<RequestKey, u64>);

impl RequestCounts {
    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    /// Totals by verb.
    pub fn by_verb(&self) -> std::collections::BTreeMap<String, u64> {
        let mut out = std::collections::BTreeMap::new();
        for (k, n) in &self.0 {
            *out.entry(k.verb.clone()).or_default() += n;
        }
        out
    }

    /// Totals by client (User-Agent).
    pub fn by_client(&self) -> std::collections::BTreeMap<String, u64> {
        let mut out = std::collections::BTreeMap::new();
        for (k, n) in &self.0 {
            *out.entry(k.client.clone()).or_default() += n;
        }
        out
    }

    /// Totals by verb and path.
    pub fn by_path(&self) -> std::collections::BTreeMap<(String, String), u64> {
        let mut out = std::collections::BTreeMap::new();
        for (k, n) in &self.0 {
            *out.entry((k.verb.clone(), k.path.clone())).or_default() += n;
        }
        out
    }

    /// The requests counted here and not in `earlier` (a snapshot taken before).
    pub fn since(&self, earlier: &RequestCounts) -> RequestCounts {
        RequestCounts(
            self.0
                .iter()
                .filter_map(|(k, n)| {
                    let d = n - earlier.0.get(k).copied().unwrap_or(0).min(*n);
                    (d > 0).then(|| (k.clone(), d))
                })
                .collect(),
        )
    }
}

impl LoggedRequest {
    /// The first value of query parameter `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl FakeApiServer {
    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.shared.lock().requests.clone()
    }

    pub fn clear_requests(&self) {
        self.shared.lock().requests.clear();
    }

    /// Requests received since the start (or `reset_request_counts`), by client, verb and path.
    pub fn request_counts(&self) -> RequestCounts {
        RequestCounts(self.shared.lock().counts.clone())
    }

    pub fn reset_request_counts(&self) {
        self.shared.lock().counts.clear();
    }

    /// Keep the full request log (`requests()`, on by default). Load tests turn it off and
    /// read `request_counts()` instead.
    pub fn set_request_log(&self, on: bool) {
        let mut st = self.shared.lock();
        st.log_requests = on;
        if !on {
            st.requests.clear();
        }
    }
}
