//! Slurm's compressed host lists: `node[01-03,07]`, `gpu[1-2]-ib,cn5`, `d09n04s[01-02]`.

use super::values::ValueError;

/// Upper bound on the hosts one list may expand to: larger input is an error, not an OOM.
pub const MAX_HOSTS: usize = 1_000_000;

/// Expands a host list. `None assigned`, `None` and empty give no hosts.
pub fn expand(list: &str) -> Result<Vec<String>, ValueError> {
    let mut out = Vec::new();
    if list.is_empty() || list == "None assigned" || list == "None" || list == "(null)" {
        return Ok(out);
    }
    for item in split_top_level(list)? {
        expand_one(item, &mut out, list)?;
    }
    Ok(out)
}

/// Splits at commas that are not inside brackets.
fn split_top_level(list: &str) -> Result<Vec<&str>, ValueError> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in list.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&list[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        if !(0..=1).contains(&depth) {
            return Err(ValueError(format!("host list {list:?} has unbalanced or nested brackets")));
        }
    }
    if depth != 0 {
        return Err(ValueError(format!("host list {list:?} has an unclosed '['")));
    }
    parts.push(&list[start..]);
    Ok(parts)
}

/// Expands one item, which may hold several bracket groups (`rack[1-2]n[01-02]`).
fn expand_one(item: &str, out: &mut Vec<String>, whole: &str) -> Result<(), ValueError> {
    let bad = |why: &str| ValueError(format!("host list {whole:?}: {why}"));
    if item.is_empty() {
        return Err(bad("empty host name"));
    }
    let Some(open) = item.find('[') else {
        out.push(item.to_string());
        return Ok(());
    };
    let close = item[open..].find(']').map(|c| open + c).ok_or_else(|| bad("unclosed '['"))?;
    let (prefix, ranges, suffix) = (&item[..open], &item[open + 1..close], &item[close + 1..]);
    for range in ranges.split(',') {
        let (lo, hi) = range.split_once('-').unwrap_or((range, range));
        let width = lo.len();
        let lo_n: u64 = lo.parse().map_err(|_| bad("range bound is not a number"))?;
        let hi_n: u64 = hi.parse().map_err(|_| bad("range bound is not a number"))?;
        if hi_n < lo_n {
            return Err(bad("range runs backwards"));
        }
        if (hi_n - lo_n) as usize >= MAX_HOSTS || out.len() + ((hi_n - lo_n) as usize) >= MAX_HOSTS {
            return Err(bad("expands to more than a million hosts"));
        }
        for n in lo_n..=hi_n {
            let host = format!("{prefix}{n:0width$}");
            // The suffix may hold further bracket groups.
            expand_one(&format!("{host}{suffix}"), out, whole)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_real_lists() {
        assert_eq!(expand("vm").unwrap(), vec!["vm"]);
        assert_eq!(expand("None assigned").unwrap(), Vec::<String>::new());
        // From xdmod__accounting-logs.log.
        let hosts = expand("d07n07s02,d09n04s[01-02],d13n[03,05,07-08,16]").unwrap();
        assert_eq!(
            hosts,
            vec!["d07n07s02", "d09n04s01", "d09n04s02", "d13n03", "d13n05", "d13n07", "d13n08", "d13n16"]
        );
        assert_eq!(expand("c1-28").unwrap(), vec!["c1-28"]);
        assert_eq!(expand("r[1-2]n[1-2]").unwrap(), vec!["r1n1", "r1n2", "r2n1", "r2n2"]);
        assert_eq!(expand("gpu[8-10]-ib").unwrap(), vec!["gpu8-ib", "gpu9-ib", "gpu10-ib"]);
    }

    #[test]
    fn rejects_bad_lists() {
        for bad in ["n[1-", "n[a-b]", "n[3-1]", "n]1[", "a,,b", "n[0-99999999]"] {
            assert!(expand(bad).is_err(), "{bad}");
        }
    }
}
