// Emulation stand-in for the CUDA header of the same name: see pf_emu/half.h.
#pragma once
#include "pf_emu/half.h"
