//! Rollup rows read from PostgreSQL as binary `COPY` output, which costs far less per row
//! than sqlx's row stream: the statement (parameters written in) and the parser.

use super::DayRow;

/// `sql` with each `$n` replaced by the number `args[n - 1]`, for statements that take
/// no parameters (`COPY`). Only for SQL built here, where `$` appears in no literal.
pub(super) fn inline_args(sql: &str, args: &[i64]) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let digits = rest[at + 1..]
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len() - at - 1);
        match rest[at + 1..at + 1 + digits].parse::<usize>() {
            // In parentheses: `- $1` must not become the comment `--5`.
            Ok(n) if (1..=args.len()).contains(&n) => out.push_str(&format!("({})", args[n - 1])),
            _ => out.push_str(&rest[at..at + 1 + digits]),
        }
        rest = &rest[at + 1 + digits..];
    }
    out.push_str(rest);
    out
}

/// The whole output of a `COPY ... TO STDOUT` statement on PostgreSQL.
pub(super) async fn copy_rows(
    pool: &sqlx::PgPool,
    statement: &str,
) -> Result<Vec<u8>, sqlx::Error> {
    use futures::TryStreamExt;
    let mut conn = pool.acquire().await?;
    let copied = async {
        let mut chunks = conn.copy_out_raw(statement).await?;
        let mut out = Vec::new();
        while let Some(chunk) = chunks.try_next().await? {
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }
    .await;
    if copied.is_err() {
        // sqlx leaves the ReadyForQuery of a COPY refused before it started unread (0.9):
        // the connection must not serve another query.
        conn.close_on_drop();
    }
    copied
}

/// Rollup rows from PostgreSQL's binary `COPY` format: group, name, then ten `BIGINT`s.
pub(super) fn parse_copy(data: &[u8]) -> Result<Vec<DayRow>, String> {
    const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";
    fn take<'a>(data: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
        if data.len() < n {
            return Err("output ends inside a row".into());
        }
        let (head, tail) = data.split_at(n);
        *data = tail;
        Ok(head)
    }
    fn int(data: &mut &[u8]) -> Result<i64, String> {
        let len = i32::from_be_bytes(take(data, 4)?.try_into().unwrap_or_default());
        match len {
            -1 => Err("a NULL figure".into()),
            8 => Ok(i64::from_be_bytes(
                take(data, 8)?.try_into().unwrap_or_default(),
            )),
            _ => Err(format!("an integer field of {len} bytes, not a BIGINT")),
        }
    }
    let mut data = data;
    if take(&mut data, SIGNATURE.len())? != SIGNATURE {
        return Err("not binary COPY output".into());
    }
    let flags = u32::from_be_bytes(take(&mut data, 4)?.try_into().unwrap_or_default());
    if flags & (1 << 16) != 0 {
        return Err("rows carry OIDs".into());
    }
    let extension = u32::from_be_bytes(take(&mut data, 4)?.try_into().unwrap_or_default());
    take(&mut data, extension as usize)?;
    let mut rows = Vec::new();
    loop {
        let fields = i16::from_be_bytes(take(&mut data, 2)?.try_into().unwrap_or_default());
        if fields == -1 {
            return Ok(rows);
        }
        if fields != 12 {
            return Err(format!("a row of {fields} fields, not 12"));
        }
        let gid = int(&mut data)?;
        let len = i32::from_be_bytes(take(&mut data, 4)?.try_into().unwrap_or_default());
        let name = if len == -1 {
            String::new()
        } else if len < 0 {
            return Err(format!("a text field of {len} bytes"));
        } else {
            let bytes = take(&mut data, len as usize)?;
            std::str::from_utf8(bytes)
                .map(str::to_owned)
                .unwrap_or_else(|_| String::from_utf8_lossy(bytes).into_owned())
        };
        rows.push((
            gid,
            name,
            int(&mut data)?,
            int(&mut data)?,
            int(&mut data)?,
            int(&mut data)?,
            int(&mut data)?,
            int(&mut data)?,
            int(&mut data)?,
            int(&mut data)?,
            int(&mut data)?,
            int(&mut data)?,
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_parameters_are_written_in() {
        let sql = "WHERE r.span = 12 AND r.month = $1 AND r.day >= $12 AND x = $3 AND y = $";
        let args: Vec<i64> = (1..=12).map(|n| n * 100).collect();
        assert_eq!(
            inline_args(sql, &args),
            "WHERE r.span = 12 AND r.month = (100) AND r.day >= (1200) AND x = (300) AND y = $"
        );
        assert_eq!(inline_args("a = -$1", &[-5]), "a = -(-5)");
        assert_eq!(inline_args("a = $2", &[7]), "a = $2");
    }

    #[test]
    fn binary_copy_rows_decode_and_bad_output_is_an_error() {
        let mut data = b"PGCOPY\n\xff\r\n\0".to_vec();
        data.extend_from_slice(&0i32.to_be_bytes());
        data.extend_from_slice(&0i32.to_be_bytes());
        data.extend_from_slice(&12i16.to_be_bytes());
        data.extend_from_slice(&8i32.to_be_bytes());
        data.extend_from_slice(&(-5i64).to_be_bytes());
        data.extend_from_slice(&6i32.to_be_bytes());
        data.extend_from_slice("站一".as_bytes());
        data.extend_from_slice(&8i32.to_be_bytes());
        data.extend_from_slice(&20_422i64.to_be_bytes());
        for n in 0..9i64 {
            data.extend_from_slice(&8i32.to_be_bytes());
            data.extend_from_slice(&(n * 1_000_000_007).to_be_bytes());
        }
        let whole = data.clone();
        data.extend_from_slice(&(-1i16).to_be_bytes());
        let rows = parse_copy(&data).unwrap();
        assert_eq!(
            rows,
            vec![(
                -5,
                "站一".to_string(),
                20_422,
                0,
                1_000_000_007,
                2_000_000_014,
                3_000_000_021,
                4_000_000_028,
                5_000_000_035,
                6_000_000_042,
                7_000_000_049,
                8_000_000_056
            )]
        );
        // A figure that is not eight bytes, or NULL, is refused rather than misread.
        let mut narrow = whole[..whole.len() - 12].to_vec();
        narrow.extend_from_slice(&4i32.to_be_bytes());
        narrow.extend_from_slice(&7i32.to_be_bytes());
        narrow.extend_from_slice(&(-1i16).to_be_bytes());
        assert!(parse_copy(&narrow).unwrap_err().contains("4 bytes"));
        let mut null = whole[..whole.len() - 12].to_vec();
        null.extend_from_slice(&(-1i32).to_be_bytes());
        null.extend_from_slice(&(-1i16).to_be_bytes());
        assert!(parse_copy(&null).unwrap_err().contains("NULL"));
        // Cut anywhere, or not COPY output at all: an error, never a panic.
        for cut in 0..=whole.len() {
            assert!(parse_copy(&whole[..cut]).is_err(), "cut at {cut}");
        }
        assert!(parse_copy(b"hello").is_err());
    }
}
