//! Reading the CTranslate2 `model.bin` (possibly split into parts).
//!
//! Why it exists: the pinned packages split big models over several
//! wheels; [`Joined`] reads the parts as one file, and [`Index`] lists its
//! variables (names, shapes, types, offsets) without loading their data,
//! checking every length against the file.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

use super::{CT2_BINARY_VERSION, ConvertError};

// ---------------------------------------------------------------------------
// Reading the CTranslate2 model (possibly split into parts)
// ---------------------------------------------------------------------------

pub(super) struct Part {
    pub(super) path: PathBuf,
    pub(super) file: File,
    pub(super) start: u64,
    pub(super) len: u64,
}

/// The model file, or its parts read as one file joined in order.
pub(super) struct Joined {
    pub(super) parts: Vec<Part>,
    pub(super) total: u64,
    pub(super) label: String,
}

impl Joined {
    pub(super) fn open(paths: &[PathBuf]) -> Result<Self, ConvertError> {
        let mut parts = Vec::new();
        let mut start = 0u64;
        for path in paths {
            let file = File::open(path).map_err(|source| ConvertError::Read {
                path: path.clone(),
                source,
            })?;
            let len = file
                .metadata()
                .map_err(|source| ConvertError::Read {
                    path: path.clone(),
                    source,
                })?
                .len();
            parts.push(Part {
                path: path.clone(),
                file,
                start,
                len,
            });
            start += len;
        }
        let label = paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(" + ");
        if parts.is_empty() {
            return Err(ConvertError::Model {
                source_name: label,
                reason: "no model file given".into(),
            });
        }
        Ok(Joined {
            parts,
            total: start,
            label,
        })
    }

    pub(super) fn invalid(&self, reason: impl Into<String>) -> ConvertError {
        ConvertError::Model {
            source_name: self.label.clone(),
            reason: reason.into(),
        }
    }

    pub(super) fn truncated(&self, what: &str, at: u64, n: u64) -> ConvertError {
        let hint = if self.parts.len() > 1 {
            " (is a part missing or truncated?)"
        } else {
            ""
        };
        self.invalid(format!(
            "truncated: {what} at byte {at} needs {n} byte(s), but the model ends at byte {}{hint}",
            self.total
        ))
    }

    /// Fills `buf` from `offset` of the joined file.
    pub(super) fn read_at(
        &self,
        offset: u64,
        buf: &mut [u8],
        what: &str,
    ) -> Result<(), ConvertError> {
        let n = buf.len() as u64;
        if offset.checked_add(n).is_none_or(|end| end > self.total) {
            return Err(self.truncated(what, offset, n));
        }
        let mut done = 0usize;
        while done < buf.len() {
            let at = offset + done as u64;
            let Some(part) = self
                .parts
                .iter()
                .find(|p| at >= p.start && at < p.start + p.len)
            else {
                return Err(self.truncated(what, offset, n));
            };
            let in_part = (part.start + part.len - at).min((buf.len() - done) as u64) as usize;
            let mut file = &part.file;
            file.seek(SeekFrom::Start(at - part.start))
                .and_then(|_| file.read_exact(&mut buf[done..done + in_part]))
                .map_err(|source| ConvertError::Read {
                    path: part.path.clone(),
                    source,
                })?;
            done += in_part;
        }
        Ok(())
    }
}

/// A CTranslate2 element type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dtype {
    F32,
    I8,
    I16,
    I32,
    F16,
    Bf16,
}

impl Dtype {
    pub(super) fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => Dtype::F32,
            1 => Dtype::I8,
            2 => Dtype::I16,
            3 => Dtype::I32,
            4 => Dtype::F16,
            5 => Dtype::Bf16,
            _ => return None,
        })
    }

    pub(super) fn size(self) -> u64 {
        match self {
            Dtype::I8 => 1,
            Dtype::I16 | Dtype::F16 | Dtype::Bf16 => 2,
            Dtype::F32 | Dtype::I32 => 4,
        }
    }

    pub(super) fn is_float(self) -> bool {
        matches!(self, Dtype::F32 | Dtype::F16 | Dtype::Bf16)
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "float32",
            Dtype::I8 => "int8",
            Dtype::I16 => "int16",
            Dtype::I32 => "int32",
            Dtype::F16 => "float16",
            Dtype::Bf16 => "bfloat16",
        }
    }
}

#[derive(Debug, Clone)]
pub(super) struct Variable {
    pub(super) shape: Vec<u64>,
    pub(super) dtype: Dtype,
    pub(super) offset: u64,
}

/// The table of contents of a CTranslate2 model: where each variable is.
pub(super) struct Index {
    pub(super) variables: HashMap<String, Variable>,
    pub(super) aliases: HashMap<String, String>,
}

pub(super) struct Cursor<'a> {
    pub(super) src: &'a Joined,
    pub(super) pos: u64,
}

impl Cursor<'_> {
    pub(super) fn bytes(&mut self, n: usize, what: &str) -> Result<Vec<u8>, ConvertError> {
        let mut buf = vec![0u8; n];
        self.src.read_at(self.pos, &mut buf, what)?;
        self.pos += n as u64;
        Ok(buf)
    }

    pub(super) fn u8(&mut self, what: &str) -> Result<u8, ConvertError> {
        Ok(self.bytes(1, what)?[0])
    }

    pub(super) fn u16(&mut self, what: &str) -> Result<u16, ConvertError> {
        let b = self.bytes(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    pub(super) fn u32(&mut self, what: &str) -> Result<u32, ConvertError> {
        let b = self.bytes(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(super) fn string(&mut self, what: &str) -> Result<String, ConvertError> {
        let at = self.pos;
        let len = self.u16(what)?;
        let mut bytes = self.bytes(usize::from(len), what)?;
        if bytes.pop() != Some(0) {
            return Err(self.src.invalid(format!(
                "corrupt: {what} at byte {at} is not NUL-terminated"
            )));
        }
        String::from_utf8(bytes).map_err(|_| {
            self.src
                .invalid(format!("corrupt: {what} at byte {at} is not UTF-8"))
        })
    }

    pub(super) fn skip(&mut self, n: u64, what: &str) -> Result<(), ConvertError> {
        if self
            .pos
            .checked_add(n)
            .is_none_or(|end| end > self.src.total)
        {
            return Err(self.src.truncated(what, self.pos, n));
        }
        self.pos += n;
        Ok(())
    }
}

impl Index {
    pub(super) fn read(src: &Joined) -> Result<Self, ConvertError> {
        let mut c = Cursor { src, pos: 0 };
        let version = c.u32("the binary version")?;
        if version != CT2_BINARY_VERSION {
            return Err(src.invalid(format!(
                "not a CTranslate2 model this converter reads (binary version {version}, expected {CT2_BINARY_VERSION})"
            )));
        }
        let spec = c.string("the model spec name")?;
        if spec != "WhisperSpec" {
            return Err(src.invalid(format!(
                "a CTranslate2 '{spec}' model, not a whisper model (WhisperSpec)"
            )));
        }
        let _revision = c.u32("the spec revision")?;
        let n_variables = c.u32("the variable count")?;
        let mut variables = HashMap::new();
        for i in 0..n_variables {
            let what = format!("variable {i}");
            let name = c.string(&format!("the name of {what}"))?;
            let rank = c.u8(&format!("the rank of '{name}'"))?;
            let mut shape = Vec::with_capacity(usize::from(rank));
            for _ in 0..rank {
                shape.push(u64::from(c.u32(&format!("the shape of '{name}'"))?));
            }
            let code = c.u8(&format!("the type of '{name}'"))?;
            let dtype = Dtype::from_code(code).ok_or_else(|| {
                src.invalid(format!("corrupt: '{name}' has unknown type code {code}"))
            })?;
            let n_bytes = u64::from(c.u32(&format!("the size of '{name}'"))?);
            let expected = shape
                .iter()
                .try_fold(dtype.size(), |acc, &d| acc.checked_mul(d));
            if expected != Some(n_bytes) {
                return Err(src.invalid(format!(
                    "corrupt: '{name}' has shape {shape:?} of {} but {n_bytes} bytes",
                    dtype.name()
                )));
            }
            let offset = c.pos;
            c.skip(n_bytes, &format!("the data of '{name}'"))?;
            if variables
                .insert(
                    name.clone(),
                    Variable {
                        shape,
                        dtype,
                        offset,
                    },
                )
                .is_some()
            {
                return Err(src.invalid(format!("corrupt: variable '{name}' appears twice")));
            }
        }
        let n_aliases = c.u32("the alias count")?;
        let mut aliases = HashMap::new();
        for i in 0..n_aliases {
            let alias = c.string(&format!("alias {i}"))?;
            let target = c.string(&format!("the target of alias '{alias}'"))?;
            if !variables.contains_key(&target) {
                return Err(src.invalid(format!(
                    "corrupt: alias '{alias}' names a missing variable '{target}'"
                )));
            }
            aliases.insert(alias, target);
        }
        if c.pos != src.total {
            return Err(src.invalid(format!(
                "corrupt: {} unexpected byte(s) after the aliases at byte {}",
                src.total - c.pos,
                c.pos
            )));
        }
        Ok(Index { variables, aliases })
    }

    pub(super) fn get(&self, src: &Joined, name: &str) -> Result<&Variable, ConvertError> {
        let key = self.aliases.get(name).map(String::as_str).unwrap_or(name);
        self.variables
            .get(key)
            .ok_or_else(|| src.invalid(format!("not a whisper model: no variable '{name}'")))
    }

    pub(super) fn scalar(&self, src: &Joined, name: &str) -> Result<i64, ConvertError> {
        let v = self.get(src, name)?;
        if v.shape.iter().product::<u64>() != 1 {
            return Err(src.invalid(format!("'{name}' should be a single value")));
        }
        let mut buf = vec![0u8; v.dtype.size() as usize];
        src.read_at(v.offset, &mut buf, name)?;
        Ok(match v.dtype {
            Dtype::I8 => i64::from(buf[0] as i8),
            Dtype::I16 => i64::from(i16::from_le_bytes([buf[0], buf[1]])),
            Dtype::I32 => i64::from(i32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]])),
            _ => return Err(src.invalid(format!("'{name}' should be an integer"))),
        })
    }
}
