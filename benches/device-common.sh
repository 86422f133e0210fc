# Shared by the scripts that run on a lent GPU machine without Rust (benches/gpu-check.sh,
# benches/device-sweeps.sh): the Vulkan loader and the carried elab. The caller defines
# `say` and `note` (progress and notes), `$scratch` (a temporary folder), `$python` and `$repo`.

vulkan_setup() {
    # (grep without -q reads all: an early exit would fail ldconfig's write under pipefail)
    if ! ldconfig -p | grep 'libvulkan\.so\.1' >/dev/null; then
        local debs=(.gl/*.deb)
        if [ -f "${debs[0]}" ]; then
            # The loaders carried from Debian (libvulkan1, libegl1, ...): the device README's recipe.
            for f in "${debs[@]}"; do dpkg -x "$f" /; done
            ldconfig
            say "no Vulkan loader here: unpacked ${#debs[@]} packages from .gl/"
        else
            note "no Vulkan loader (libvulkan.so.1) and no .gl/ packages to unpack"
        fi
    fi
    local nvidia=/usr/local/nvidia/share
    if [ -z "${VK_DRIVER_FILES:-}${VK_ICD_FILENAMES:-}" ] \
        && ! compgen -G "/usr/share/vulkan/icd.d/nvidia*" >/dev/null \
        && ! compgen -G "/etc/vulkan/icd.d/nvidia*" >/dev/null \
        && [ -f "$nvidia/vulkan/icd.d/nvidia_icd.json" ]; then
        # The driver's folder is mounted where the loader does not look.
        export VK_DRIVER_FILES="$nvidia/vulkan/icd.d/nvidia_icd.json"
        if [ -f "$nvidia/glvnd/egl_vendor.d/10_nvidia.json" ]; then
            export __EGL_VENDOR_LIBRARY_FILENAMES="$nvidia/glvnd/egl_vendor.d/10_nvidia.json"
        fi
        say "VK_DRIVER_FILES=$VK_DRIVER_FILES"
    fi
}

find_elab() {
    if [ -n "${ELAB:-}" ]; then
        echo "$ELAB"
    elif [ -f .gpu/elab.xz ]; then
        # xz may be missing on the GPU machine; Python's lzma is always there.
        if command -v xz >/dev/null; then
            xz -dc .gpu/elab.xz >"$scratch/elab"
        else
            "$python" -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' \
                .gpu/elab.xz "$scratch/elab"
        fi
        chmod +x "$scratch/elab"
        echo "$scratch/elab"
    elif [ -x target/debug/elab ]; then
        echo "$repo/target/debug/elab"
    else
        echo "no elab: set ELAB, or carry .gpu/elab.xz (just gpu-binary)" >&2
        return 1
    fi
}
