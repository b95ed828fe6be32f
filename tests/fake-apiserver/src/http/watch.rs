//! Watch streams: the initial events (synthetic ADDED, history replay or a 410 Expired
//! ERROR), then live events filtered by scope and selector, bookmarks, and the end of the
//! stream on timeout, a break, a lagging reader or a closed client.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{Response, header};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use super::Params;
use super::response::error_response;
use super::routing::Target;
use super::verbs::{in_scope, matching};
use crate::resources::RESOURCES;
use crate::selector::Selector;
use crate::status::ApiError;
use crate::store::{Event, EventType};
use crate::{Control, Shared};

fn line(etype: &str, obj: &Value) -> Bytes {
    let mut s = json!({"type": etype, "object": obj}).to_string();
    s.push('\n');
    Bytes::from(s)
}

/// The event a selector-filtered watcher sees for `ev`, if any: an object moving into the
/// selection is ADDED and one moving out is DELETED, as the real watch cache reports.
fn translate(ev: &Event, t: &Target, sel: &Selector) -> Option<Bytes> {
    if !in_scope(ev.res, &ev.ns, t) {
        return None;
    }
    let now = sel.matches(&ev.object);
    let etype = match ev.etype {
        EventType::Added | EventType::Deleted if now => ev.etype.as_str(),
        EventType::Modified => {
            let before = ev.old.as_ref().is_none_or(|o| sel.matches(o));
            match (before, now) {
                (true, true) => "MODIFIED",
                (false, true) => "ADDED",
                (true, false) => "DELETED",
                (false, false) => return None,
            }
        }
        _ => return None,
    };
    Some(line(etype, &ev.object))
}

fn bookmark(t: &Target, rv: u64, initial_end: bool) -> Bytes {
    let def = &RESOURCES[t.res];
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    line(
        "BOOKMARK",
        &json!({"kind": def.kind, "apiVersion": def.api_version(), "metadata": meta}),
    )
}

struct WatchSetup {
    initial: Vec<Bytes>,
    cursor: u64,
    events: broadcast::Receiver<Arc<Event>>,
    expired: bool,
}

pub(super) fn watch(
    shared: &Arc<Shared>,
    t: &Target,
    params: &Params,
    sel: Selector,
) -> Response<Body> {
    let setup = {
        let st = shared.lock();
        // Subscribing under the lock: every later write is on the channel, every earlier one
        // is in the history or the current objects, so nothing falls in between.
        let events = st.events_tx.subscribe();
        let rv = params.get("resourceVersion").unwrap_or("");
        let mut initial = Vec::new();
        let mut expired = false;
        if params.flag("sendInitialEvents") {
            for o in matching(&st, t, &sel) {
                initial.push(line("ADDED", &o));
            }
            initial.push(bookmark(t, st.rv, true));
        } else if rv.is_empty() || rv == "0" {
            for o in matching(&st, t, &sel) {
                initial.push(line("ADDED", &o));
            }
        } else {
            match rv.parse::<u64>() {
                Ok(from) if from >= st.compacted_rv => {
                    for ev in st.history.iter().filter(|e| e.rv > from) {
                        initial.extend(translate(ev, t, &sel));
                    }
                }
                Ok(from) => {
                    expired = true;
                    let e = ApiError::new(
                        410,
                        "Expired",
                        format!("too old resource version: {from} ({})", st.compacted_rv),
                    );
                    initial.push(line("ERROR", &e.to_status()));
                }
                Err(_) => {
                    return error_response(&ApiError::bad_request(format!(
                        "resourceVersion {rv:?} is not a valid resource version"
                    )));
                }
            }
        }
        WatchSetup {
            initial,
            cursor: st.rv,
            events,
            expired,
        }
    };
    let timeout = params
        .get("timeoutSeconds")
        .and_then(|s| s.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(1800));
    let bookmarks = params.flag("allowWatchBookmarks");
    let (tx, rx) = mpsc::channel::<Bytes>(1024);
    let target = Target {
        res: t.res,
        ns: t.ns.clone(),
        name: None,
        sub: None,
    };
    let sh = shared.clone();
    let control = shared.control_tx.subscribe();
    shared.handle.spawn(run_watch(
        sh, target, sel, setup, control, tx, timeout, bookmarks,
    ));
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<Bytes, Infallible>(b), rx))
    });
    let mut r = Response::new(Body::from_stream(stream));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}

struct WatchGuard(Arc<Shared>);

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.0
            .open_watches
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_watch(
    shared: Arc<Shared>,
    t: Target,
    sel: Selector,
    setup: WatchSetup,
    mut control: broadcast::Receiver<Control>,
    tx: mpsc::Sender<Bytes>,
    timeout: Duration,
    bookmarks: bool,
) {
    shared
        .open_watches
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let _guard = WatchGuard(shared.clone());
    for b in setup.initial {
        if tx.send(b).await.is_err() {
            return;
        }
    }
    if setup.expired {
        return;
    }
    let WatchSetup {
        mut events,
        mut cursor,
        ..
    } = setup;
    let deadline = tokio::time::Instant::now() + timeout;
    let period = shared.bookmark_interval();
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    loop {
        let mut send_bookmark = false;
        tokio::select! {
            ev = events.recv() => match ev {
                Ok(ev) => {
                    if ev.rv <= cursor { continue; }
                    cursor = ev.rv;
                    if let Some(b) = translate(&ev, &t, &sel) && tx.send(b).await.is_err() {
                        return;
                    }
                }
                // Fell behind the channel: end the stream so the client re-watches from its
                // last resourceVersion and gets the rest from the history.
                Err(_) => return,
            },
            _ = ticker.tick(), if bookmarks => send_bookmark = true,
            c = control.recv() => match c {
                Ok(Control::Bookmark) => send_bookmark = bookmarks,
                Ok(Control::Break) | Err(broadcast::error::RecvError::Closed) => return,
                Err(broadcast::error::RecvError::Lagged(_)) => {}
            },
            _ = tokio::time::sleep_until(deadline) => return,
            _ = tx.closed() => return,
        }
        if send_bookmark {
            // Deliver what is already queued first, so the bookmark never runs ahead of events.
            loop {
                let ev = match events.try_recv() {
                    Ok(ev) => ev,
                    Err(broadcast::error::TryRecvError::Empty) => break,
                    Err(_) => return,
                };
                if ev.rv <= cursor {
                    continue;
                }
                cursor = ev.rv;
                if let Some(b) = translate(&ev, &t, &sel)
                    && tx.send(b).await.is_err()
                {
                    return;
                }
            }
            if tx.send(bookmark(&t, cursor, false)).await.is_err() {
                return;
            }
        }
    }
}
