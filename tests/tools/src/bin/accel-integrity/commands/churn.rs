//! `churn`: short connections (connect, echo a few bytes, close) as fast
//! as the client threads can (or with a pause after each), against
//! in-process servers.

use std::{
    io::{Read, Write},
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use accel_test_harness::pattern;
use anyhow::{Context, Result, anyhow, ensure};
use serde_json::json;

use super::{connect, connect_addr, listen, print_report, spawn};

pub(crate) fn churn(
    listen_at: &[SocketAddr],
    threads: usize,
    duration: Duration,
    bytes: usize,
    pause: Duration,
) -> Result<()> {
    let mut targets = Vec::new();
    for a in listen_at {
        let l = listen(*a)?;
        targets.push(connect_addr(&l)?);
        // Several acceptors per listener, each serving its connection
        // inline: a thread per short connection would dominate the cost.
        let l = Arc::new(l);
        for _ in 0..threads.max(2) {
            let l = l.clone();
            spawn(move || {
                let mut buf = vec![0u8; bytes.max(1)];
                while let Ok((mut s, _)) = l.accept() {
                    // The client closes first (TIME_WAIT on its side), after
                    // reading the echo; then our read sees EOF.
                    let _ = s
                        .read_exact(&mut buf)
                        .and_then(|_| s.write_all(&buf))
                        .and_then(|_| s.read(&mut buf[..1]).map(drop));
                }
            });
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let errors: Arc<Mutex<Vec<String>>> = Arc::default();
    let error_count = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let clients: Vec<_> = (0..threads)
        .map(|t| {
            let (stop, done, errors, error_count) = (
                stop.clone(),
                done.clone(),
                errors.clone(),
                error_count.clone(),
            );
            let targets = targets.clone();
            spawn(move || {
                let mut i = 0u64;
                let mut got = vec![0u8; bytes];
                while !stop.load(Ordering::Relaxed) {
                    let seed = ((t as u64) << 40) | i;
                    let dst = targets[(i as usize + t) % targets.len()];
                    let data = pattern::bytes(seed, 0, bytes);
                    let r = (|| -> Result<()> {
                        let mut s = connect(dst).context("connect")?;
                        s.write_all(&data).context("send")?;
                        s.read_exact(&mut got).context("read the echo")?;
                        ensure!(got == data, "echo differs");
                        Ok(())
                    })();
                    match r {
                        Ok(()) => {
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            if error_count.fetch_add(1, Ordering::Relaxed) < 20
                                && let Ok(mut v) = errors.lock()
                            {
                                v.push(format!("thread {t} #{i}: {e:#}"));
                            }
                        }
                    }
                    i += 1;
                    if !pause.is_zero() {
                        thread::sleep(pause);
                    }
                }
            })
        })
        .collect();
    // One sample per second: the rate over time, not only the average.
    let mut per_second = Vec::new();
    let mut last = 0;
    while started.elapsed() < duration {
        thread::sleep(Duration::from_secs(1).min(duration.saturating_sub(started.elapsed())));
        let now = done.load(Ordering::Relaxed);
        per_second.push(now - last);
        last = now;
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().map_err(|_| anyhow!("churn client panicked"))?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let n = done.load(Ordering::Relaxed);
    let errs = error_count.load(Ordering::Relaxed);
    print_report(&json!({
        "connections": n,
        "errors": errs,
        "first_errors": *errors.lock().map_err(|_| anyhow!("poisoned"))?,
        "elapsed_s": elapsed,
        "rate_per_s": n as f64 / elapsed,
        "per_second": per_second,
    }))?;
    ensure!(errs == 0, "{errs} churn connections failed");
    Ok(())
}
