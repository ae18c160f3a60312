//! `judge bench load`: replays a contest-like mix of submissions against a running server and
//! prints, over time, queue depth, running jobs, replicas per pool, p95 and error rate, then
//! waits for the queue to drain and checks every verdict against the one its source was
//! written to get.
//!
//! The mix: a burst at contest start, then Poisson arrivals at a steady rate. Languages are
//! weighted like a typical ICPC-style contest (C++ most, then Python, Java, C, JavaScript;
//! those the server does not offer are left out), verdict intents are weighted AC 45 %,
//! WA 28 %, TLE 10 %, RTE 8 %, CE 6 %, MLE 3 % (MLE only in C/C++, else WA). Sources solve
//! (or deliberately fail) A+B: two integers in, their sum out.
//!
//! One client on one IP meets the per-user and per-IP token buckets (10 tokens, 2/s); run the
//! server with `[rate_limit]` raised for a load test. Refusals are counted (429 rate limited,
//! 503 shed) and not retried: a refused submission is part of the figures.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use rand::Rng;
use serde::Deserialize;

use crate::engine::model::{Priority, Stats};
use crate::judge::Verdict;

/// Options of one run.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Server base URL, e.g. `http://127.0.0.1:8080`.
    pub server: String,
    /// Bearer token; an admin token (the stats are admin-only).
    pub token: String,
    /// How long submissions keep arriving after the burst.
    pub duration: Duration,
    /// Submissions sent at once at contest start.
    pub burst: u32,
    /// Steady arrival rate after the burst, submissions per second (Poisson).
    pub rate: f64,
    /// Problem id to submit to.
    pub problem: String,
    /// Share of submissions sent with `low` priority (the rest `normal`).
    pub low_share: f64,
    /// How often a line of figures is printed.
    pub report_every: Duration,
    /// How long to wait for the queue to drain after the last submission.
    pub drain_timeout: Duration,
}

/// What a source is written to get.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Intent {
    Ac,
    Wa,
    Tle,
    Rte,
    Ce,
    Mle,
}

impl Intent {
    fn verdict(self) -> Verdict {
        match self {
            Intent::Ac => Verdict::AC,
            Intent::Wa => Verdict::WA,
            Intent::Tle => Verdict::TLE,
            Intent::Rte => Verdict::RTE,
            Intent::Ce => Verdict::CE,
            Intent::Mle => Verdict::MLE,
        }
    }
}

const INTENTS: &[(Intent, u32)] = &[
    (Intent::Ac, 45),
    (Intent::Wa, 28),
    (Intent::Tle, 10),
    (Intent::Rte, 8),
    (Intent::Ce, 6),
    (Intent::Mle, 3),
];

const LANGUAGES: &[(&str, u32)] = &[
    ("cpp", 55),
    ("python3", 25),
    ("java", 8),
    ("c", 7),
    ("javascript", 5),
];

/// The A+B source in `lang` written to get `intent` (MLE falls back to WA where a language's
/// out-of-memory ending is not reliably MLE).
fn source(lang: &str, intent: Intent) -> (&'static str, Intent) {
    use Intent::*;
    let s = match (lang, intent) {
        ("cpp", Ac) => "#include <cstdio>\nint main(){long long a,b;if(scanf(\"%lld %lld\",&a,&b)!=2)return 0;printf(\"%lld\\n\",a+b);}\n",
        ("cpp", Wa) => "#include <cstdio>\nint main(){long long a,b;if(scanf(\"%lld %lld\",&a,&b)!=2)return 0;printf(\"%lld\\n\",a+b+1);}\n",
        ("cpp", Tle) => "int main(){volatile unsigned long x=0;for(;;)x++;}\n",
        ("cpp", Rte) => "#include <cstdlib>\nint main(){std::abort();}\n",
        ("cpp", Ce) => "int main( { return 0; }\n",
        ("cpp", Mle) => "#include <cstdio>\n#include <vector>\nint main(){std::vector<char> v(1u<<30,1);long long s=0;for(size_t i=0;i<v.size();i+=4096)s+=v[i];printf(\"%lld\\n\",s);}\n",
        ("c", Ac) => "#include <stdio.h>\nint main(void){long long a,b;if(scanf(\"%lld %lld\",&a,&b)!=2)return 0;printf(\"%lld\\n\",a+b);return 0;}\n",
        ("c", Wa) => "#include <stdio.h>\nint main(void){long long a,b;if(scanf(\"%lld %lld\",&a,&b)!=2)return 0;printf(\"%lld\\n\",a-b-1);return 0;}\n",
        ("c", Tle) => "int main(void){volatile unsigned long x=0;for(;;)x++;}\n",
        ("c", Rte) => "#include <stdlib.h>\nint main(void){abort();}\n",
        ("c", Ce) => "int main(void) { return 0 }\n",
        ("c", Mle) => "#include <stdio.h>\n#include <stdlib.h>\nint main(void){size_t n=1u<<30;volatile char*p=malloc(n);if(!p)return 1;long s=0;for(size_t i=0;i<n;i+=4096){p[i]=1;s+=p[i];}printf(\"%ld\\n\",s);return 0;}\n",
        ("python3", Ac) => "a, b = map(int, open(0).read().split()[:2])\nprint(a + b)\n",
        ("python3", Tle) => "while True:\n    pass\n",
        ("python3", Rte) => "a = 1 // 0\n",
        ("python3", Ce) => "def f(:\n    pass\n",
        ("python3", _) => "a, b = map(int, open(0).read().split()[:2])\nprint(a + b + 1)\n",
        ("java", Ac) => "import java.util.*;\npublic class Main { public static void main(String[] x) { Scanner s = new Scanner(System.in); long a = s.nextLong(), b = s.nextLong(); System.out.println(a + b); } }\n",
        ("java", Tle) => "public class Main { public static void main(String[] x) { long i = 0; while (true) { i++; } } }\n",
        ("java", Rte) => "public class Main { public static void main(String[] x) { throw new RuntimeException(\"boom\"); } }\n",
        ("java", Ce) => "public class Main { public static void main(String[] x) { int y = } }\n",
        ("java", _) => "import java.util.*;\npublic class Main { public static void main(String[] x) { Scanner s = new Scanner(System.in); long a = s.nextLong(), b = s.nextLong(); System.out.println(a + b + 1); } }\n",
        ("javascript", Ac) => "const [a, b] = require('fs').readFileSync(0, 'utf8').trim().split(/\\s+/).map(BigInt);\nconsole.log((a + b).toString());\n",
        ("javascript", Tle) => "for (;;) {}\n",
        ("javascript", Rte) => "throw new Error('boom');\n",
        ("javascript", Ce) => "function ( {\n",
        (_, _) => "const [a, b] = require('fs').readFileSync(0, 'utf8').trim().split(/\\s+/).map(BigInt);\nconsole.log((a + b + 1n).toString());\n",
    };
    let got = match (lang, intent) {
        ("cpp" | "c", i) => i,
        (_, Mle) => Wa,
        (_, i) => i,
    };
    (s, got)
}

fn pick<'a, T>(rng: &mut impl Rng, table: &'a [(T, u32)]) -> &'a T {
    let total: u32 = table.iter().map(|(_, w)| w).sum();
    let mut x = rng.gen_range(0..total);
    for (t, w) in table {
        if x < *w {
            return t;
        }
        x -= w;
    }
    &table[table.len() - 1].0
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    accepted: AtomicU64,
    shed: AtomicU64,
    rate_limited: AtomicU64,
    failed: AtomicU64,
}

#[derive(Deserialize)]
struct IdBody {
    id: String,
}

#[derive(Deserialize)]
struct Lang {
    id: String,
}

#[derive(Deserialize)]
struct View {
    state: String,
    verdict: Option<Verdict>,
}

struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| format!("GET {path}"))?;
        let status = r.status();
        if !status.is_success() {
            let body = r.text().await.unwrap_or_default();
            anyhow::bail!("GET {path}: {status}: {body}");
        }
        r.json()
            .await
            .with_context(|| format!("GET {path}: bad JSON"))
    }
}

/// Runs the load; prints to stdout as it goes.
///
/// # Errors
/// The server cannot be reached, refuses the token, or does not offer the problem.
pub fn run(opts: LoadOptions) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(drive(opts))
}

async fn drive(opts: LoadOptions) -> anyhow::Result<()> {
    let api = Arc::new(Api {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(64)
            .build()?,
        base: opts.server.trim_end_matches('/').to_string(),
        token: opts.token.clone(),
    });
    let offered: Vec<Lang> = api.get("/api/v1/languages").await?;
    let langs: Vec<(&str, u32)> = LANGUAGES
        .iter()
        .copied()
        .filter(|(l, _)| offered.iter().any(|o| o.id == *l))
        .collect();
    anyhow::ensure!(!langs.is_empty(), "the server offers none of {LANGUAGES:?}");
    let _: Stats = api
        .get("/api/v1/stats")
        .await
        .context("the stats need an admin token")?;
    println!(
        "judge bench load: {} + {}/s for {} against {} (problem {}, languages {})",
        opts.burst,
        opts.rate,
        humantime::format_duration(opts.duration),
        api.base,
        opts.problem,
        langs.iter().map(|(l, _)| *l).collect::<Vec<_>>().join(",")
    );

    let counters = Arc::new(Counters::default());
    let accepted = Arc::new(tokio::sync::Mutex::new(
        Vec::<(String, Intent, String)>::new(),
    ));
    let sem = Arc::new(tokio::sync::Semaphore::new(64));
    let t0 = Instant::now();

    // The submitter: burst, then Poisson arrivals until the duration is over.
    let submitter = {
        let (api, counters, accepted, sem, opts) = (
            api.clone(),
            counters.clone(),
            accepted.clone(),
            sem.clone(),
            opts.clone(),
        );
        let langs: Vec<(String, u32)> = langs.iter().map(|(l, w)| (l.to_string(), *w)).collect();
        tokio::spawn(async move {
            let mut tasks = tokio::task::JoinSet::new();
            let mut n = 0u64;
            let end = t0 + opts.duration;
            loop {
                let now = Instant::now();
                if n >= u64::from(opts.burst) {
                    if now >= end || opts.rate <= 0.0 {
                        break;
                    }
                    let gap = {
                        let mut rng = rand::thread_rng();
                        -rng.gen::<f64>().max(1e-12).ln() / opts.rate
                    };
                    tokio::time::sleep(Duration::from_secs_f64(gap)).await;
                }
                n += 1;
                let (lang, intent, prio) = {
                    let mut rng = rand::thread_rng();
                    let lang = pick(&mut rng, &langs).clone();
                    let intent = *pick(&mut rng, INTENTS);
                    let prio = if rng.gen::<f64>() < opts.low_share {
                        Priority::Low
                    } else {
                        Priority::Normal
                    };
                    (lang, intent, prio)
                };
                let permit = sem.clone().acquire_owned().await.expect("semaphore open");
                let (api, counters, accepted, problem) = (
                    api.clone(),
                    counters.clone(),
                    accepted.clone(),
                    opts.problem.clone(),
                );
                tasks.spawn(async move {
                    let _permit = permit;
                    let (src, expect) = source(&lang, intent);
                    counters.sent.fetch_add(1, Ordering::Relaxed);
                    let body = serde_json::json!({
                        "problem": problem, "language": lang, "source": src, "priority": prio,
                    });
                    let res = api
                        .http
                        .post(format!("{}/api/v1/submissions", api.base))
                        .bearer_auth(&api.token)
                        .json(&body)
                        .send()
                        .await;
                    match res {
                        Ok(r) if r.status().as_u16() == 202 || r.status().is_success() => {
                            match r.json::<IdBody>().await {
                                Ok(b) => {
                                    counters.accepted.fetch_add(1, Ordering::Relaxed);
                                    accepted.lock().await.push((b.id, expect, lang));
                                }
                                Err(_) => {
                                    counters.failed.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                        }
                        Ok(r) if r.status().as_u16() == 503 => {
                            counters.shed.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(r) if r.status().as_u16() == 429 => {
                            counters.rate_limited.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(r) => {
                            let status = r.status();
                            let text = r.text().await.unwrap_or_default();
                            if counters.failed.fetch_add(1, Ordering::Relaxed) < 3 {
                                eprintln!("submission refused: {status}: {text}");
                            }
                        }
                        Err(e) => {
                            if counters.failed.fetch_add(1, Ordering::Relaxed) < 3 {
                                eprintln!("submission failed: {e}");
                            }
                        }
                    }
                });
            }
            while tasks.join_next().await.is_some() {}
        })
    };

    // The reporter: one line per interval until submissions are over and the queue drained.
    println!(
        "{:>6} {:>6} {:>6} {:>5} {:>5} | {:>16} | {:>12} | {:>10} | {:>20} | {:>6} | shedding",
        "t",
        "sent",
        "accept",
        "503",
        "429",
        "queue c/m/t",
        "run c/m/t",
        "repl c/m/t",
        "p95 ms c/m/t",
        "err%",
    );
    let mut peak_depth = 0u64;
    let mut peak_replicas: BTreeMap<String, u32> = BTreeMap::new();
    let mut drained_at = None;
    let mut submit_done_at = None;
    let mut tick = tokio::time::interval(opts.report_every);
    loop {
        tick.tick().await;
        if submit_done_at.is_none() && submitter.is_finished() {
            submit_done_at = Some(t0.elapsed());
        }
        let stats: Stats = match api.get("/api/v1/stats").await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("stats: {e:#}");
                continue;
            }
        };
        let by = |f: &dyn Fn(&crate::engine::model::PoolStats) -> String| {
            stats.pools.iter().map(f).collect::<Vec<_>>().join("/")
        };
        let depth: u64 = stats.pools.iter().map(|p| p.queue_depth.total()).sum();
        let running: u64 = stats.pools.iter().map(|p| p.in_flight).sum();
        peak_depth = peak_depth.max(depth);
        for p in &stats.pools {
            let e = peak_replicas.entry(p.name.clone()).or_default();
            *e = (*e).max(p.replicas);
        }
        let err = stats.pools.iter().map(|p| p.error_rate).fold(0.0, f64::max);
        println!(
            "{:>5.0}s {:>6} {:>6} {:>5} {:>5} | {:>16} | {:>12} | {:>10} | {:>20} | {:>6.1} | {:?}",
            t0.elapsed().as_secs_f64(),
            counters.sent.load(Ordering::Relaxed),
            counters.accepted.load(Ordering::Relaxed),
            counters.shed.load(Ordering::Relaxed),
            counters.rate_limited.load(Ordering::Relaxed),
            by(&|p| p.queue_depth.total().to_string()),
            by(&|p| p.in_flight.to_string()),
            by(&|p| p.replicas.to_string()),
            by(&|p| p
                .p95_ms
                .map(|v| format!("{v:.0}"))
                .unwrap_or_else(|| "-".into())),
            err * 100.0,
            stats.shedding,
        );
        if let Some(done) = submit_done_at {
            if depth == 0 && running == 0 {
                drained_at = Some(t0.elapsed());
                break;
            }
            if t0.elapsed() > done + opts.drain_timeout {
                println!(
                    "queue not drained {} after the last submission",
                    humantime::format_duration(opts.drain_timeout)
                );
                break;
            }
        }
    }
    submitter.await.ok();

    // Verdicts against intents.
    let accepted = accepted.lock().await.clone();
    let mut table: BTreeMap<(Intent, Option<Verdict>), u64> = BTreeMap::new();
    let mut per_lang: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut unfinished = 0;
    for chunk in accepted.chunks(16) {
        let views = futures::future::join_all(chunk.iter().map(|(id, _, _)| {
            let api = api.clone();
            let path = format!("/api/v1/submissions/{id}");
            async move { api.get::<View>(&path).await }
        }))
        .await;
        for ((_, intent, lang), v) in chunk.iter().zip(views) {
            let verdict = match v {
                Ok(v) if v.state == "done" => v.verdict,
                _ => {
                    unfinished += 1;
                    None
                }
            };
            *table.entry((*intent, verdict)).or_default() += 1;
            let e = per_lang.entry(lang.clone()).or_default();
            e.0 += 1;
            if verdict == Some(intent.verdict()) {
                e.1 += 1;
            }
        }
    }
    let matched: u64 = table
        .iter()
        .filter(|((i, v), _)| *v == Some(i.verdict()))
        .map(|(_, n)| n)
        .sum();
    println!();
    println!(
        "sent {} accepted {} shed(503) {} rate-limited(429) {} failed {}",
        counters.sent.load(Ordering::Relaxed),
        counters.accepted.load(Ordering::Relaxed),
        counters.shed.load(Ordering::Relaxed),
        counters.rate_limited.load(Ordering::Relaxed),
        counters.failed.load(Ordering::Relaxed),
    );
    if let Some(d) = submit_done_at {
        println!("submissions over at {:.0}s", d.as_secs_f64());
    }
    match drained_at {
        Some(d) => println!("queue drained at {:.0}s", d.as_secs_f64()),
        None => println!("queue NOT drained"),
    }
    println!(
        "peak queue depth {peak_depth}; peak replicas {}",
        peak_replicas
            .iter()
            .map(|(p, n)| format!("{p} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "verdicts as intended: {matched}/{} ({unfinished} not finished)",
        accepted.len()
    );
    for ((intent, verdict), n) in &table {
        let mark = if *verdict == Some(intent.verdict()) {
            ""
        } else {
            "  <- differs"
        };
        println!(
            "  intended {:<3} got {:<4} {n}{mark}",
            format!("{:?}", intent.verdict()),
            verdict
                .map(|v| format!("{v:?}"))
                .unwrap_or_else(|| "-".into())
        );
    }
    for (lang, (n, ok)) in &per_lang {
        println!("  {lang:<10} {ok}/{n} as intended");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_language_has_a_source_for_every_intent() {
        for (lang, _) in LANGUAGES {
            for (intent, _) in INTENTS {
                let (src, expect) = source(lang, *intent);
                assert!(!src.is_empty());
                if *intent == Intent::Mle && !matches!(*lang, "cpp" | "c") {
                    assert_eq!(expect, Intent::Wa);
                } else {
                    assert_eq!(expect, *intent);
                }
            }
        }
        assert!(source("python3", Intent::Ac).0.contains("print(a + b)"));
    }

    #[test]
    fn weighted_pick_follows_the_weights() {
        let mut rng = rand::thread_rng();
        let mut ac = 0;
        for _ in 0..10_000 {
            if *pick(&mut rng, INTENTS) == Intent::Ac {
                ac += 1;
            }
        }
        assert!((4000..5000).contains(&ac), "{ac}");
    }
}
