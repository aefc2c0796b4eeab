# shell-rc.sh - bash's start-up file in a lab guest's interactive shell (lab.sh shell).
# guest-init.sh starts `bash --rcfile <repo>/scripts/lab/shell-rc.sh -i` on the guest's
# second serial port, in the same environment a `lab.sh run` command gets.

# The prompt says which guest this is: two terminals look alike otherwise.
PS1='[lab $LAB_ROLE $LAB_IP] \w\$ '
HISTFILE=/root/.bash_history   # /root is a tmpfs: the history lives as long as the guest

# The host's poweroff asks systemd, which does not run here. Leaving the shell is what
# powers this guest off (guest-init.sh does it when bash exits), so poweroff leaves it.
poweroff() { echo "lab: leaving the $LAB_ROLE guest's shell; the guest powers off"; exit 0; }

if [ "$LAB_RUNTIME" = kernel ]; then
    _lab_rdma="Soft-RoCE rxe0, RoCE v2 GID index $LAB_GID_INDEX"
else
    _lab_rdma="userspace runtime: scripts/userspace-roce.sh -- PROGRAM, UROCE_ADDR=eth0; GID index $LAB_GID_INDEX"
fi
cat <<EOF
lab: $LAB_ROLE guest, eth0 $LAB_IP ($_lab_rdma); server $LAB_SERVER_IP, client $LAB_CLIENT_IP
lab: the repository is the working directory (read-only; write to /tmp or $LAB_OUT)
lab: try: rdma link; ibv_devices; ibv_devinfo; lab-ready --help; lab-wait --help
lab: exit (or Ctrl-D, or poweroff) powers this guest off
EOF
unset _lab_rdma
