//! The signed device id `fy_dev`: one resident, one id, across WHEP, HLS and later interaction.
