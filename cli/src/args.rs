//! Value parsers for numeric flags. clap puts the flag in the error (`invalid value '0' for
//! '--reps <REPS>': must be at least 1`); these say the accepted range. Bounds that depend on the
//! model (a context within its positions) are checked where the model is opened.

/// The largest count of tokens, windows or repetitions a flag takes: far beyond any model's
/// context, and small enough that the products the commands form (`(chunks + 1) × ctx × 8`
/// bytes of text) cannot overflow.
pub const MAX_COUNT: u64 = 1 << 24;

fn int(s: &str) -> Result<u64, String> {
    s.trim()
        .parse::<u64>()
        .map_err(|_| format!("`{s}` is not a whole number ≥ 0"))
}

/// A count from 1 to [`MAX_COUNT`].
pub fn count(s: &str) -> Result<usize, String> {
    count_from::<1>(s)
}

/// Greedy decoding's steps in flight on the GPU: 0 (step by step, each token's logits read
/// back) to [`tlite_runtime_gpu::MAX_LEAD`].
pub fn lead(s: &str) -> Result<usize, String> {
    let v = int(s)?;
    let max = tlite_runtime_gpu::MAX_LEAD;
    if v > max as u64 {
        return Err(format!("must be at most {max}"));
    }
    Ok(v as usize)
}

/// A count from `MIN` to [`MAX_COUNT`].
pub fn count_from<const MIN: u64>(s: &str) -> Result<usize, String> {
    let v = int(s)?;
    if v < MIN {
        return Err(format!("must be at least {MIN}"));
    }
    if v > MAX_COUNT {
        return Err(format!("must be at most {MAX_COUNT}"));
    }
    usize::try_from(v).map_err(|_| format!("must be at most {}", usize::MAX))
}

/// A count from 1 to `MAX`.
pub fn count_upto<const MAX: u64>(s: &str) -> Result<usize, String> {
    let v = u64_in::<1, MAX>(s)?;
    usize::try_from(v).map_err(|_| format!("must be at most {}", usize::MAX))
}

/// A whole number from `MIN` to `MAX`.
pub fn u64_in<const MIN: u64, const MAX: u64>(s: &str) -> Result<u64, String> {
    let v = int(s)?;
    if (MIN..=MAX).contains(&v) {
        Ok(v)
    } else {
        Err(format!("must be between {MIN} and {MAX}"))
    }
}

/// A quantization group size (what the quantizer takes).
pub fn group_size(s: &str) -> Result<usize, String> {
    let v = usize::try_from(int(s)?).map_err(|_| "is too large".to_string())?;
    tlite_quantizer::check_group(v).map_err(|e| e.to_string())
}

/// A size in bytes: a whole number with an optional `K`, `M` or `G` (binary units), at least
/// 1 KiB.
pub fn byte_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, shift) = match t.chars().last() {
        Some('K' | 'k') => (&t[..t.len() - 1], 10),
        Some('M' | 'm') => (&t[..t.len() - 1], 20),
        Some('G' | 'g') => (&t[..t.len() - 1], 30),
        _ => (t, 0),
    };
    let v = int(num).map_err(|_| format!("`{s}` is not a size (e.g. 4G, 512M, 65536)"))?;
    let bytes = v
        .checked_mul(1u64 << shift)
        .ok_or_else(|| format!("`{s}` is too large"))?;
    if bytes < 1024 {
        return Err("must be at least 1K".into());
    }
    Ok(bytes)
}

fn float(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number"))?;
    if v.is_finite() {
        Ok(v)
    } else {
        Err("must be a finite number".into())
    }
}

/// A sampling temperature: finite and ≥ 0.
pub fn temperature(s: &str) -> Result<f64, String> {
    match float(s) {
        Ok(v) if v >= 0.0 => Ok(v),
        _ => Err("must be a finite number ≥ 0 (0 = greedy)".into()),
    }
}

/// A probability mass for nucleus sampling: in (0, 1].
pub fn top_p(s: &str) -> Result<f64, String> {
    match float(s) {
        Ok(v) if v > 0.0 && v <= 1.0 => Ok(v),
        _ => Err("must be a number in (0, 1] (1 = off)".into()),
    }
}

/// Milliseconds between probes: above 0, at most a minute.
pub fn interval_ms(s: &str) -> Result<f64, String> {
    match float(s) {
        Ok(v) if v > 0.0 && v <= 60_000.0 => Ok(v),
        _ => Err("must be a number above 0 and at most 60000 (a minute)".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_their_messages() {
        assert_eq!(count("3"), Ok(3));
        assert_eq!(count("0"), Err("must be at least 1".into()));
        assert_eq!(count_from::<2>("1"), Err("must be at least 2".into()));
        assert!(
            count("18446744073709551615")
                .unwrap_err()
                .contains("at most")
        );
        assert!(count("-1").unwrap_err().contains("not a whole number"));
        assert_eq!(
            u64_in::<1, 10>("11"),
            Err("must be between 1 and 10".into())
        );
        assert_eq!(group_size("64"), Ok(64));
        assert!(group_size("0").unwrap_err().contains("group size 0"));
        assert_eq!(temperature("0.7"), Ok(0.7));
        for bad in ["-0.5", "NaN", "inf", "x"] {
            assert!(temperature(bad).is_err(), "{bad}");
        }
        assert_eq!(top_p("1"), Ok(1.0));
        for bad in ["0", "1.5", "NaN"] {
            assert!(top_p(bad).is_err(), "{bad}");
        }
        assert!(interval_ms("1e300").is_err());
        assert_eq!(
            byte_size("4G"),
            Ok(tlite_converter::export::DEFAULT_SHARD_BYTES),
            "export's --shard-size default"
        );
        assert_eq!(byte_size("64k"), Ok(64 << 10));
        assert_eq!(byte_size("2048"), Ok(2048));
        for bad in ["1", "x", "-1M", "99999999999G", ""] {
            assert!(byte_size(bad).is_err(), "{bad}");
        }
    }
}

/// `--kv-cache`: the KV cache's element type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum KvCacheArg {
    /// Keys and values as the model computes them.
    F32,
    /// Half the memory, where the adapter has f16 (f32 otherwise; the header line says which).
    F16,
}

/// The device options of `run` and `bench`: the environment's
/// ([`tlite_runtime_gpu::DeviceOptions::from_env`]), with `--kv-cache` over `TLITE_KV_CACHE`,
/// and with neither the f16 cache (where the adapter has f16), as llama.cpp's default cache.
/// The measuring commands (`parity`, `ppl`, `compare`, `sweep`) keep the f32 cache unless
/// `TLITE_KV_CACHE=f16` asks.
pub fn device_options(
    adapter: Option<String>,
    kv_cache: Option<KvCacheArg>,
) -> tlite_runtime_gpu::DeviceOptions {
    use tlite_runtime_gpu::KvCache;
    let mut o = tlite_runtime_gpu::DeviceOptions::from_env(adapter);
    o.kv_cache = match (kv_cache, std::env::var_os("TLITE_KV_CACHE")) {
        (Some(KvCacheArg::F32), _) => KvCache::F32,
        (Some(KvCacheArg::F16), _) => KvCache::F16,
        (None, Some(_)) => o.kv_cache,
        (None, None) => KvCache::F16,
    };
    o
}
