//! Output validators: the built-in default one (exactly as the Kattis problem package
//! format's "Default Output Validator Specification" defines it), and the mapping of
//! custom validators' exit codes (Kattis 42/43, testlib 0/1/2/3/7) to verdicts.

use crate::judge::verdict::Verdict;

/// Options of the default output validator (its command-line arguments).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct DefaultFlags {
    /// `case_sensitive`: tokens must match byte for byte.
    pub case_sensitive: bool,
    /// `space_change_sensitive`: whitespace runs must match the answer's exactly.
    pub space_change_sensitive: bool,
    /// `float_absolute_tolerance ε` (or `float_tolerance ε`).
    pub float_abs: Option<f64>,
    /// `float_relative_tolerance ε` (or `float_tolerance ε`).
    pub float_rel: Option<f64>,
}

impl DefaultFlags {
    /// Parses the validator arguments. Errors (a judge error, IE): an unknown argument,
    /// a tolerance without a valid non-negative number, a tolerance given twice, or
    /// `float_tolerance` together with a relative/absolute one (spec: "It is an error to
    /// provide any of ... more than once, or to provide a float_tolerance alongside").
    pub fn parse<S: AsRef<str>>(args: &[S]) -> Result<DefaultFlags, String> {
        let mut f = DefaultFlags::default();
        let mut saw_tol = false;
        let mut saw_abs = false;
        let mut saw_rel = false;
        let mut it = args.iter().map(|s| s.as_ref());
        while let Some(a) = it.next() {
            match a {
                "case_sensitive" => f.case_sensitive = true,
                "space_change_sensitive" => f.space_change_sensitive = true,
                "float_tolerance" | "float_absolute_tolerance" | "float_relative_tolerance" => {
                    let v = it.next().ok_or_else(|| format!("{a} needs a value"))?;
                    let eps: f64 = v
                        .parse()
                        .ok()
                        .filter(|x: &f64| x.is_finite() && *x >= 0.0)
                        .ok_or_else(|| format!("{a}: {v:?} is not a non-negative number"))?;
                    let dup = match a {
                        "float_tolerance" => {
                            std::mem::replace(&mut saw_tol, true) || saw_abs || saw_rel
                        }
                        "float_absolute_tolerance" => {
                            std::mem::replace(&mut saw_abs, true) || saw_tol
                        }
                        _ => std::mem::replace(&mut saw_rel, true) || saw_tol,
                    };
                    if dup {
                        return Err(format!("{a}: float tolerance given more than once"));
                    }
                    match a {
                        "float_tolerance" => {
                            f.float_abs = Some(eps);
                            f.float_rel = Some(eps);
                        }
                        "float_absolute_tolerance" => f.float_abs = Some(eps),
                        _ => f.float_rel = Some(eps),
                    }
                }
                other => {
                    return Err(format!(
                        "unknown default output validator argument {other:?}"
                    ))
                }
            }
        }
        Ok(f)
    }

    fn has_tolerance(&self) -> bool {
        self.float_abs.is_some() || self.float_rel.is_some()
    }
}

/// The spec's whitespace: space, form feed, line feed, carriage return, tab, vertical tab.
fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | 0x0c | b'\n' | b'\r' | b'\t' | 0x0b)
}

/// Walks `s` as alternating whitespace runs and tokens, `ws[0] tok[0] ws[1] tok[1] …
/// ws[n]`: each item is a whitespace run and the token after it (`None` after the
/// last run). Streaming, so that judging a huge output allocates nothing per token.
struct Pieces<'a> {
    s: &'a [u8],
    i: usize,
    done: bool,
}

impl<'a> Pieces<'a> {
    fn new(s: &'a [u8]) -> Pieces<'a> {
        Pieces {
            s,
            i: 0,
            done: false,
        }
    }

    /// Number of tokens left.
    fn tokens_left(self) -> usize {
        self.filter(|(_, t)| t.is_some()).count()
    }
}

impl<'a> Iterator for Pieces<'a> {
    type Item = (&'a [u8], Option<&'a [u8]>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let s = self.s;
        let start = self.i;
        while self.i < s.len() && is_ws(s[self.i]) {
            self.i += 1;
        }
        let ws = &s[start..self.i];
        if self.i == s.len() {
            self.done = true;
            return Some((ws, None));
        }
        let start = self.i;
        while self.i < s.len() && !is_ws(s[self.i]) {
            self.i += 1;
        }
        Some((ws, Some(&s[start..self.i])))
    }
}

/// Whether `t` matches the spec's float grammar:
/// `[+-]? ( digit* "." digit+ | digit+ "." | digit+ ) ([Ee] [+-]? digit+)?`.
/// (So `inf`, `nan`, hex floats and `1e` are not numbers.)
pub fn is_float_token(t: &[u8]) -> bool {
    let mut i = 0;
    if i < t.len() && (t[i] == b'+' || t[i] == b'-') {
        i += 1;
    }
    let int_start = i;
    while i < t.len() && t[i].is_ascii_digit() {
        i += 1;
    }
    let int_digits = i - int_start;
    let mut frac_digits = 0;
    if i < t.len() && t[i] == b'.' {
        i += 1;
        let fs = i;
        while i < t.len() && t[i].is_ascii_digit() {
            i += 1;
        }
        frac_digits = i - fs;
    }
    if int_digits == 0 && frac_digits == 0 {
        return false;
    }
    if i < t.len() && (t[i] == b'e' || t[i] == b'E') {
        i += 1;
        if i < t.len() && (t[i] == b'+' || t[i] == b'-') {
            i += 1;
        }
        let es = i;
        while i < t.len() && t[i].is_ascii_digit() {
            i += 1;
        }
        if i == es {
            return false;
        }
    }
    i == t.len()
}

fn parse_float(t: &[u8]) -> Option<f64> {
    if !is_float_token(t) {
        return None;
    }
    // The grammar is a subset of what Rust's correctly rounded parser accepts, except
    // that Rust rejects a trailing "." with an exponent (e.g. "1.e5"): insert a zero.
    let s = std::str::from_utf8(t).ok()?;
    s.parse::<f64>()
        .ok()
        .or_else(|| s.replacen(".", ".0", 1).parse::<f64>().ok())
}

fn show(t: &[u8]) -> String {
    const MAX: usize = 40;
    let s = String::from_utf8_lossy(&t[..t.len().min(MAX)]).into_owned();
    if t.len() > MAX {
        format!("{s:?}…")
    } else {
        format!("{s:?}")
    }
}

fn line_of(s: &[u8], tok: &[u8]) -> usize {
    // `tok` is a subslice of `s`: count newlines before it.
    let off = tok.as_ptr() as usize - s.as_ptr() as usize;
    s[..off].iter().filter(|&&b| b == b'\n').count() + 1
}

/// Runs the default output validator on the team's `output` against `answer`.
/// Returns `Ok(())` for AC and `Err(message)` for WA; the message names the position
/// and the team's token, never the expected answer (it may be shown to teams).
pub fn default_validate(answer: &[u8], output: &[u8], flags: &DefaultFlags) -> Result<(), String> {
    let mut apieces = Pieces::new(answer);
    let mut opieces = Pieces::new(output);
    // Tokens compared so far, and the first whitespace run that differs (reported only
    // when every token matches).
    let mut k = 0usize;
    let mut ws_differs: Option<usize> = None;
    loop {
        let (Some((aw, atok)), Some((ow, otok))) = (apieces.next(), opieces.next()) else {
            unreachable!("both walks end with a (run, None) item and stop after it");
        };
        if flags.space_change_sensitive && ws_differs.is_none() && aw != ow {
            ws_differs = Some(k);
        }
        match (atok, otok) {
            (Some(a), Some(o)) => {
                if !token_matches(a, o, flags) {
                    return Err(format!(
                        "wrong answer at token {} (line {} of the output): got {}",
                        k + 1,
                        line_of(output, o),
                        show(o)
                    ));
                }
                k += 1;
            }
            (None, None) => break,
            (Some(_), None) => {
                return Err(format!(
                    "output ends too early: {k} tokens, the answer has {}",
                    k + 1 + apieces.tokens_left()
                ));
            }
            (None, Some(extra)) => {
                return Err(format!(
                    "extra output: {} tokens, the answer has {k}; first extra token {} on line {}",
                    k + 1 + opieces.tokens_left(),
                    show(extra),
                    line_of(output, extra)
                ));
            }
        }
    }
    if let Some(run) = ws_differs {
        let where_ = if run == 0 {
            "before the first token".to_string()
        } else if run == k {
            "after the last token".to_string()
        } else {
            format!("after token {run}")
        };
        return Err(format!(
            "whitespace differs {where_} (space_change_sensitive)"
        ));
    }
    Ok(())
}

fn token_matches(a: &[u8], o: &[u8], flags: &DefaultFlags) -> bool {
    if flags.has_tolerance() {
        if let Some(av) = parse_float(a) {
            let Some(ov) = parse_float(o) else {
                return false;
            };
            if av == ov {
                return true;
            }
            let d = (ov - av).abs();
            let abs_ok = flags.float_abs.is_some_and(|e| d <= e);
            let rel_ok = flags.float_rel.is_some_and(|e| d <= e * av.abs());
            return abs_ok || rel_ok;
        }
    }
    if flags.case_sensitive {
        a == o
    } else {
        a.eq_ignore_ascii_case(o)
    }
}

/// What a custom output validator's run meant.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidatorJudgement {
    /// AC, WA, or IE when the validator did not operate properly.
    pub verdict: Verdict,
    /// A testlib checker's points (exit code 7), as given on its output.
    pub points: Option<f64>,
    /// Why, for IE and testlib messages.
    pub message: String,
}

/// Maps a Kattis output validator's exit code: 42 AC, 43 WA, anything else (0 included)
/// IE (spec: "Any other exit code, including 0, indicates that the validator did not
/// operate properly").
pub fn kattis_exit(code: i32) -> ValidatorJudgement {
    match code {
        42 => ValidatorJudgement {
            verdict: Verdict::AC,
            points: None,
            message: String::new(),
        },
        43 => ValidatorJudgement {
            verdict: Verdict::WA,
            points: None,
            message: String::new(),
        },
        c => ValidatorJudgement {
            verdict: Verdict::IE,
            points: None,
            message: format!("output validator exited with code {c} (expected 42 or 43)"),
        },
    }
}

/// Maps a testlib checker's exit code (testlib.h `TResult`): 0 OK → AC, 1 WA → WA,
/// 2 PE → WA ("presentation error"), 3 FAIL → IE (the checker failed), 4 "dirt" → WA,
/// 7 points → AC with the points read from the start of its message (e.g. `"0.5 ok"`
/// or `"points 0.5"`), 8 unexpected EOF → WA, 16..=116 partially correct → AC with
/// points `(code − 16) / 100`; anything else → IE. `message` is the checker's output.
pub fn testlib_exit(code: i32, message: &str) -> ValidatorJudgement {
    let msg = message.trim().to_string();
    let j = |verdict, points| ValidatorJudgement {
        verdict,
        points,
        message: msg.clone(),
    };
    match code {
        0 => j(Verdict::AC, None),
        1 | 4 | 8 => j(Verdict::WA, None),
        2 => ValidatorJudgement {
            verdict: Verdict::WA,
            points: None,
            message: format!("presentation error: {msg}"),
        },
        3 => ValidatorJudgement {
            verdict: Verdict::IE,
            points: None,
            message: format!("checker failed (testlib FAIL): {msg}"),
        },
        7 => {
            let pts = msg
                .split_whitespace()
                .filter(|w| *w != "points")
                .find_map(|w| w.parse::<f64>().ok().filter(|x| x.is_finite()));
            match pts {
                Some(p) => j(Verdict::AC, Some(p)),
                None => ValidatorJudgement {
                    verdict: Verdict::IE,
                    points: None,
                    message: format!("checker returned points without a number: {msg}"),
                },
            }
        }
        16..=116 => j(Verdict::AC, Some(f64::from(code - 16) / 100.0)),
        c => ValidatorJudgement {
            verdict: Verdict::IE,
            points: None,
            message: format!("checker exited with code {c}: {msg}"),
        },
    }
}

/// Parses a `score.txt` / `score_multiplier.txt`: one finite non-negative number.
pub fn parse_score_file(content: &[u8]) -> Result<f64, String> {
    let s = String::from_utf8_lossy(content);
    let t = s.trim();
    t.parse::<f64>()
        .ok()
        .filter(|x| x.is_finite() && *x >= 0.0)
        .ok_or_else(|| format!("invalid score file content {:?}", &t[..t.len().min(40)]))
}

/// Whether a validator source is a testlib checker (it includes `testlib.h`).
pub fn is_testlib_source(src: &[u8]) -> bool {
    let s = String::from_utf8_lossy(src);
    s.lines().any(|l| {
        let l = l.trim_start();
        l.starts_with("#include") && l.contains("testlib.h")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(ans: &str, out: &str, args: &[&str]) -> bool {
        default_validate(
            ans.as_bytes(),
            out.as_bytes(),
            &DefaultFlags::parse(args).unwrap(),
        )
        .is_ok()
    }

    #[test]
    fn empty_output() {
        assert!(ok("", "", &[]));
        assert!(ok("", "\n\n  \n", &[]));
        assert!(!ok("1\n", "", &[]));
        assert!(!ok("", "1", &[]));
        let e = default_validate(b"1 2\n", b"", &DefaultFlags::default()).unwrap_err();
        assert!(e.contains("too early"), "{e}");
    }

    #[test]
    fn trailing_whitespace_and_blank_lines() {
        assert!(ok("3\n", "3", &[]), "no final newline");
        assert!(ok("3\n", "3   \n", &[]), "trailing spaces");
        assert!(ok("3\n", "3\n\n\n\n", &[]), "extra blank lines");
        assert!(ok("1 2\n", "  1\t2\n", &[]), "leading space, tab");
        assert!(!ok("3\n", "3", &["space_change_sensitive"]));
        assert!(!ok("3\n", "3 \n", &["space_change_sensitive"]));
        assert!(!ok("1 2\n", "1  2\n", &["space_change_sensitive"]));
        assert!(ok("1 2\n", "1 2\n", &["space_change_sensitive"]));
    }

    #[test]
    fn crlf() {
        assert!(ok("1 2\n3\n", "1 2\r\n3\r\n", &[]), "CRLF output");
        assert!(ok("1 2\r\n3\r\n", "1 2\n3\n", &[]), "CRLF answer file");
        assert!(!ok("1 2\n3\n", "1 2\r\n3\r\n", &["space_change_sensitive"]));
        assert!(ok("1 2\r\n", "1 2\r\n", &["space_change_sensitive"]));
    }

    #[test]
    fn tokens_split_across_lines() {
        assert!(ok("1 2 3\n", "1\n2\n3\n", &[]));
        assert!(ok("a b\nc\n", "a\nb c", &[]));
        assert!(!ok("12\n", "1 2\n", &[]), "a token split in two is wrong");
        assert!(!ok("1 2\n", "12\n", &[]));
    }

    #[test]
    fn case() {
        assert!(ok("Yes\n", "YES\n", &[]));
        assert!(ok("Yes\n", "yes\n", &[]));
        assert!(!ok("Yes\n", "YES\n", &["case_sensitive"]));
        assert!(ok("Yes\n", "Yes\n", &["case_sensitive"]));
        // Only ASCII letters fold.
        assert!(!ok("É\n", "é\n", &[]));
    }

    #[test]
    fn floats_with_exponents() {
        assert!(ok(
            "0.0314\n",
            "3.14000000e-2\n",
            &["float_tolerance", "1e-9"]
        ));
        assert!(ok("100\n", "1E2\n", &["float_absolute_tolerance", "0"]));
        assert!(ok("100\n", "1.e2\n", &["float_tolerance", "1e-9"]));
        assert!(ok("-0.5\n", "-.5\n", &["float_tolerance", "0"]));
        assert!(ok("2.5\n", "+2.50\n", &["float_tolerance", "1e-12"]));
        // Without a tolerance floats are strings.
        assert!(!ok("0.0314\n", "3.14e-2\n", &[]));
        assert!(!ok("1.0\n", "1.00\n", &[]));
        // Tokens that are not numbers never match a number.
        assert!(!ok("1.5\n", "1.5x\n", &["float_tolerance", "1"]));
        assert!(!ok("1.5\n", "0x1.8p0\n", &["float_tolerance", "1"]));
        assert!(!ok("1\n", "1e\n", &["float_tolerance", "1"]));
        // Non-numeric answer tokens are compared as strings even with a tolerance.
        assert!(ok(
            "abc 1.0\n",
            "ABC 1.0000001\n",
            &["float_tolerance", "1e-6"]
        ));
        assert!(!ok("abc\n", "abd\n", &["float_tolerance", "1e-6"]));
    }

    #[test]
    fn nan_and_inf_never_match_a_number() {
        for bad in ["nan", "NaN", "inf", "-inf", "infinity", "Infinity"] {
            assert!(
                !ok("1.5\n", &format!("{bad}\n"), &["float_tolerance", "1e300"]),
                "{bad}"
            );
        }
        assert!(!ok("0\n", "nan\n", &["float_absolute_tolerance", "1e300"]));
        assert!(!is_float_token(b"nan") && !is_float_token(b"inf") && !is_float_token(b"."));
        assert!(is_float_token(b"1.") && is_float_token(b".5") && is_float_token(b"-1.5E+10"));
    }

    #[test]
    fn relative_vs_absolute_tolerance_at_the_boundary() {
        // Exactly representable values: |s - a| equals the tolerance exactly.
        assert!(ok(
            "1000\n",
            "1000.5\n",
            &["float_absolute_tolerance", "0.5"]
        ));
        assert!(!ok(
            "1000\n",
            "1000.5000001\n",
            &["float_absolute_tolerance", "0.5"]
        ));
        assert!(ok("2\n", "2.5\n", &["float_relative_tolerance", "0.25"]));
        assert!(!ok(
            "2\n",
            "2.5000001\n",
            &["float_relative_tolerance", "0.25"]
        ));
        assert!(ok("2\n", "1.5\n", &["float_relative_tolerance", "0.25"]));
        // Relative tolerance scales with |a|: 0.25 of 0 is 0.
        assert!(!ok("0\n", "0.001\n", &["float_relative_tolerance", "0.25"]));
        assert!(ok("0\n", "0\n", &["float_relative_tolerance", "0.25"]));
        // Both: accepted if within either.
        assert!(ok(
            "0\n",
            "0.5\n",
            &[
                "float_relative_tolerance",
                "0.25",
                "float_absolute_tolerance",
                "0.5"
            ]
        ));
        assert!(ok(
            "1000\n",
            "1250\n",
            &[
                "float_relative_tolerance",
                "0.25",
                "float_absolute_tolerance",
                "0.5"
            ]
        ));
        assert!(!ok(
            "1000\n",
            "1250.5\n",
            &[
                "float_relative_tolerance",
                "0.25",
                "float_absolute_tolerance",
                "0.5"
            ]
        ));
        // float_tolerance sets both.
        assert!(ok("1000\n", "1250\n", &["float_tolerance", "0.25"]));
        assert!(ok("0\n", "0.25\n", &["float_tolerance", "0.25"]));
        assert!(!ok("0\n", "0.5\n", &["float_tolerance", "0.25"]));
    }

    #[test]
    fn flag_errors() {
        assert!(DefaultFlags::parse(&["float_tolerance"]).is_err());
        assert!(DefaultFlags::parse(&["float_tolerance", "x"]).is_err());
        assert!(DefaultFlags::parse(&["float_tolerance", "-1"]).is_err());
        assert!(
            DefaultFlags::parse(&["float_tolerance", "1", "float_absolute_tolerance", "1"])
                .is_err()
        );
        assert!(DefaultFlags::parse(&[
            "float_absolute_tolerance",
            "1",
            "float_absolute_tolerance",
            "1"
        ])
        .is_err());
        assert!(DefaultFlags::parse(&["bogus"]).is_err());
        let f = DefaultFlags::parse(&[
            "float_relative_tolerance",
            "1e-6",
            "float_absolute_tolerance",
            "1e-9",
            "case_sensitive",
        ])
        .unwrap();
        assert_eq!(
            f,
            DefaultFlags {
                case_sensitive: true,
                space_change_sensitive: false,
                float_abs: Some(1e-9),
                float_rel: Some(1e-6)
            }
        );
    }

    #[test]
    fn messages_name_position_not_answer() {
        let e = default_validate(b"1\n2\n3\n", b"1\n2\n4\n", &DefaultFlags::default()).unwrap_err();
        assert!(
            e.contains("token 3") && e.contains("line 3") && e.contains("\"4\""),
            "{e}"
        );
        assert!(!e.contains("\"3\""), "must not reveal the answer: {e}");
        let e = default_validate(b"1\n", b"1 2\n", &DefaultFlags::default()).unwrap_err();
        assert!(e.contains("extra"), "{e}");
    }

    #[test]
    fn exit_code_mappings() {
        assert_eq!(kattis_exit(42).verdict, Verdict::AC);
        assert_eq!(kattis_exit(43).verdict, Verdict::WA);
        assert_eq!(kattis_exit(0).verdict, Verdict::IE);
        assert_eq!(kattis_exit(1).verdict, Verdict::IE);
        assert_eq!(testlib_exit(0, "ok").verdict, Verdict::AC);
        assert_eq!(testlib_exit(1, "wrong").verdict, Verdict::WA);
        let pe = testlib_exit(2, "spaces");
        assert_eq!(pe.verdict, Verdict::WA);
        assert!(pe.message.contains("presentation"));
        assert_eq!(testlib_exit(3, "bad answer file").verdict, Verdict::IE);
        assert_eq!(testlib_exit(7, "points 0.25 half").points, Some(0.25));
        assert_eq!(testlib_exit(7, "0.5 ok").verdict, Verdict::AC);
        assert_eq!(testlib_exit(7, "nothing").verdict, Verdict::IE);
        assert_eq!(testlib_exit(66, "").points, Some(0.5));
        assert_eq!(testlib_exit(5, "").verdict, Verdict::IE);
        assert_eq!(testlib_exit(-1, "").verdict, Verdict::IE);
    }

    #[test]
    fn score_files_and_testlib_detection() {
        assert_eq!(parse_score_file(b" 12.5\n"), Ok(12.5));
        assert!(parse_score_file(b"-1").is_err());
        assert!(parse_score_file(b"nan").is_err());
        assert!(is_testlib_source(b"#include \"testlib.h\"\nint main(){}"));
        assert!(is_testlib_source(b"  #include <testlib.h>\n"));
        assert!(!is_testlib_source(b"// testlib.h\n#include <cstdio>\n"));
    }
}
