#1700000100
ls -la
#1700000200
cd /tmp
plain command
